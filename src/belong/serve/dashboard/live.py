"""Live figures from the server's own Prometheus metrics: a sampler keeps a snapshot of the counters every few
seconds for an hour; rates, percentiles, shares and hit rates are differences between snapshots.

Percentiles come from the latency histograms' bucket counts (linear inside a bucket, as Prometheus'
``histogram_quantile`` does), so they are as fine as the buckets (see :mod:`belong.serve.metrics`).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from belong.serve.metrics import STAGES, Metrics

SURFACES = ("communities", "people", "content")
INTERVAL_S = 5.0
WINDOW_S = 3600.0


@dataclass
class Snapshot:
    t: float
    #: surface -> (count, sum, [(le, cumulative count)])
    requests: dict[str, tuple[float, float, list[tuple[float, float]]]] = field(default_factory=dict)
    #: (surface, stage) -> (count, sum)
    stages: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    #: surface -> result -> count
    cache: dict[str, dict[str, float]] = field(default_factory=dict)
    fallbacks: float = 0.0
    events: float = 0.0
    rows_hit: float = 0.0
    rows_miss: float = 0.0


def take(metrics: Metrics, now: float | None = None) -> Snapshot:
    """The counters now."""
    snap = Snapshot(time.time() if now is None else now)
    buckets: dict[str, list[tuple[float, float]]] = {}
    req: dict[str, list[float]] = {}
    for fam in metrics.request_seconds.collect():
        for s in fam.samples:
            if s.labels.get("route") != "recommendations":
                continue
            surface = s.labels["surface"]
            if s.name.endswith("_bucket"):
                buckets.setdefault(surface, []).append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                req.setdefault(surface, [0.0, 0.0])[0] = s.value
            elif s.name.endswith("_sum"):
                req.setdefault(surface, [0.0, 0.0])[1] = s.value
    for surface, (n, total) in req.items():
        snap.requests[surface] = (n, total, sorted(buckets.get(surface, [])))
    for fam in metrics.stage_seconds.collect():
        for s in fam.samples:
            key = (s.labels["surface"], s.labels["stage"])
            n, total = snap.stages.get(key, (0.0, 0.0))
            if s.name.endswith("_count"):
                snap.stages[key] = (s.value, total)
            elif s.name.endswith("_sum"):
                snap.stages[key] = (n, s.value)
    for fam in metrics.cache.collect():
        for s in fam.samples:
            if s.name.endswith("_total"):
                snap.cache.setdefault(s.labels["surface"], {})[s.labels["result"]] = s.value
    for fam in metrics.fallbacks.collect():
        snap.fallbacks = sum(s.value for s in fam.samples if s.name.endswith("_total"))
    for fam in metrics.events.collect():
        snap.events = sum(s.value for s in fam.samples
                          if s.name.endswith("_total") and s.labels["result"] == "accepted")
    for fam in metrics.registry.collect():
        if fam.name == "belong_feature_rows":
            for s in fam.samples:
                if s.labels.get("result") == "hit":
                    snap.rows_hit += s.value
                elif s.labels.get("result") == "miss":
                    snap.rows_miss += s.value
    return snap


def quantile(q: float, a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float | None:
    """The ``q`` quantile (seconds) of the observations between cumulative bucket counts ``a`` (earlier, may be
    empty) and ``b``; None when there were none."""
    before = dict(a)
    rows = [(le, n - before.get(le, 0.0)) for le, n in b]
    if not rows or rows[-1][1] <= 0:
        return None
    target = q * rows[-1][1]
    lo_edge, lo_n = 0.0, 0.0
    for le, n in rows:
        if n >= target:
            if le == float("inf"):
                return lo_edge
            width = n - lo_n
            return lo_edge + (le - lo_edge) * ((target - lo_n) / width if width > 0 else 1.0)
        lo_edge, lo_n = le, n
    return lo_edge


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def between(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    """What happened between snapshots ``a`` and ``b``: rates, percentiles (ms), shares."""
    dt = max(b.t - a.t, 1e-9)
    surfaces: dict[str, Any] = {}
    total = 0.0
    for surface in SURFACES:
        nb, _, bb = b.requests.get(surface, (0.0, 0.0, []))
        na, _, ba = a.requests.get(surface, (0.0, 0.0, []))
        n = nb - na
        total += n
        p50, p99 = quantile(0.5, ba, bb), quantile(0.99, ba, bb)
        ca, cb = a.cache.get(surface, {}), b.cache.get(surface, {})
        looks = {r: cb.get(r, 0.0) - ca.get(r, 0.0) for r in cb}
        surfaces[surface] = {
            "rps": n / dt, "requests": n,
            "p50_ms": None if p50 is None else p50 * 1e3, "p99_ms": None if p99 is None else p99 * 1e3,
            "cache_hit_rate": _ratio(looks.get("hit", 0.0), sum(looks.values())),
            "stages_ms": {st: _ratio((b.stages.get((surface, st), (0, 0))[1] - a.stages.get((surface, st), (0, 0))[1])
                                     * 1e3, b.stages.get((surface, st), (0, 0))[0]
                                     - a.stages.get((surface, st), (0, 0))[0]) for st in STAGES},
        }
    rows = (b.rows_hit - a.rows_hit) + (b.rows_miss - a.rows_miss)
    return {
        "t": b.t, "seconds": dt, "rps": total / dt, "requests": total, "surfaces": surfaces,
        "degraded_share": _ratio(b.fallbacks - a.fallbacks, total),
        "events_per_s": (b.events - a.events) / dt,
        "feature_row_hit_rate": _ratio(b.rows_hit - a.rows_hit, rows),
    }


class Sampler:
    """Snapshots of one app's metrics, every ``interval_s`` for ``window_s`` (a daemon thread, started on first use;
    it ends when the metrics object is gone)."""

    def __init__(self, metrics: Metrics, interval_s: float = INTERVAL_S, window_s: float = WINDOW_S) -> None:
        self._metrics = weakref.ref(metrics)
        self.interval_s = interval_s
        self.ring: deque[Snapshot] = deque(maxlen=int(window_s / interval_s) + 2)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.ring.append(take(metrics))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="belong-dashboard-sampler", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval_s)
            if not self.sample(min_gap_s=self.interval_s * 0.5):
                return

    def sample(self, min_gap_s: float = 1.0) -> bool:
        """Take a snapshot now unless the last one is younger than ``min_gap_s``; False when the app is gone."""
        metrics = self._metrics()
        if metrics is None:
            return False
        with self._lock:
            if time.time() - self.ring[-1].t >= min_gap_s:
                self.ring.append(take(metrics))
        return True

    def report(self, window_s: float = WINDOW_S) -> dict[str, Any]:
        """The last hour: a point per interval (series) and the whole window's figures (summary)."""
        with self._lock:
            snaps = list(self.ring)
        start = snaps[-1].t - window_s
        snaps = [s for s in snaps if s.t >= start] or snaps[-1:]
        series = [between(a, b) for a, b in zip(snaps, snaps[1:], strict=False)]
        summary = between(snaps[0], snaps[-1]) if len(snaps) > 1 else between(snaps[0], snaps[0])
        return {"window_s": snaps[-1].t - snaps[0].t, "summary": summary, "series": series,
                "interval_s": self.interval_s}
