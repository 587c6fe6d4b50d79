// belong dashboard, live page: poll live.json and redraw the figures. No framework, no network but this server.
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var POLL_MS = 5000;
  var url = "";

  function fmt(v, unit) {
    if (v === null || v === undefined) { return "–"; }
    if (unit === "ms") { return v.toFixed(2) + " ms"; }
    if (unit === "%") { return (100 * v).toFixed(1) + "%"; }
    return Number(v.toPrecision(3)).toString();
  }

  function el(name, attrs, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function maxP99(point) {
    var best = null;
    Object.keys(point.surfaces).forEach(function (s) {
      var v = point.surfaces[s].p99_ms;
      if (v !== null && (best === null || v > best)) { best = v; }
    });
    return best;
  }

  var pick = {
    rps: function (p) { return p.rps; },
    p99: maxP99,
    degraded: function (p) { return p.degraded_share === null ? null : 100 * p.degraded_share; }
  };

  function draw(box, series) {
    var w = 360, h = 140, pad = 34;
    var values = series.map(pick[box.dataset.series]);
    var known = values.filter(function (v) { return v !== null; });
    var top = known.length ? Math.max.apply(null, known) : 0;
    if (top <= 0) { top = 1; }
    var label = box.dataset.label;
    var last = known.length ? known[known.length - 1] : null;
    var svg = el("svg", {"class": "chart", role: "img", viewBox: "0 0 " + w + " " + h,
      "aria-label": label + ", last hour; latest " + (last === null ? "none" : last.toPrecision(3))});
    svg.appendChild(el("title", {}, label + " over the last hour"));
    svg.appendChild(el("line", {x1: pad, y1: h - 20, x2: w - 4, y2: h - 20, "class": "axis"}));
    svg.appendChild(el("line", {x1: pad, y1: 6, x2: pad, y2: h - 20, "class": "axis"}));
    svg.appendChild(el("text", {x: pad - 4, y: 14, "text-anchor": "end"}, top >= 10 ? String(Math.round(top)) : top.toPrecision(2)));
    svg.appendChild(el("text", {x: pad - 4, y: h - 20, "text-anchor": "end"}, "0"));
    svg.appendChild(el("text", {x: w - 4, y: h - 4, "text-anchor": "end"}, "now"));
    var n = values.length, pts = [];
    values.forEach(function (v, i) {
      if (v === null) { return; }
      var x = pad + (w - pad - 4) * (n > 1 ? i / (n - 1) : 1);
      var y = (h - 20) - (h - 26) * v / top;
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    });
    if (pts.length === 1) { pts.push(pts[0].replace(/^[^,]+/, String(pad))); }  // one point: a level line
    if (pts.length) { svg.appendChild(el("polyline", {points: pts.join(" "), "class": "series"})); }
    box.replaceChildren(svg);
  }

  function update(report) {
    var s = report.summary;
    document.querySelectorAll("#surface-table tbody tr").forEach(function (row) {
      var x = s.surfaces[row.dataset.surface];
      if (!x) { return; }
      row.querySelectorAll("td[data-f]").forEach(function (td) {
        var f = td.dataset.f;
        td.textContent = f === "requests" ? String(Math.round(x[f])) :
          fmt(x[f], f.slice(-3) === "_ms" ? "ms" : (f === "cache_hit_rate" ? "%" : ""));
      });
    });
    document.querySelectorAll("#stage-table tbody tr").forEach(function (row) {
      var x = s.surfaces[row.dataset.surface];
      if (!x) { return; }
      row.querySelectorAll("td[data-stage]").forEach(function (td) { td.textContent = fmt(x.stages_ms[td.dataset.stage], "ms"); });
    });
    document.getElementById("degraded-share").textContent = fmt(s.degraded_share, "%");
    document.getElementById("row-hit-rate").textContent = fmt(s.feature_row_hit_rate, "%");
    document.querySelectorAll(".chartbox").forEach(function (box) { draw(box, report.series); });
    document.getElementById("live-status").textContent = "Window: last " + (report.window_s / 60).toFixed(1) +
      " min; updated " + new Date().toLocaleTimeString() + ".";
    document.body.dataset.updated = String(Date.now());
  }

  function poll() {
    fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) {
        if (r.status === 401) { window.location.assign(url.replace("/live.json", "/login")); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (report) { if (report) { update(report); } })
      .catch(function () { document.getElementById("live-status").textContent = "Server not reachable; retrying."; })
      .finally(function () { window.setTimeout(poll, POLL_MS); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var holder = document.querySelector("[data-live]");
    if (holder) { url = holder.dataset.live; poll(); }
  });
}());
