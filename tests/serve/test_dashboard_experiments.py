"""The dashboard's Experiments page without a browser, over a real ``belong serve`` on its own small world: the page
shows what the experiments API answers (arms, exposures, effects and intervals, SRM, guardrails), a stop needs the
session's CSRF token, and a stop from the page is the API's stop. Plus the view's guardrail rule and the interval
chart's geometry."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from belong.serve.dashboard import charts, experiment_view
from serve_helpers import ADMIN_KEY, WRITE_KEY, auth, run_server

EXP = {"name": "dash_exp", "surface": "communities", "layer": "communities", "start": "2020-01-01T00:00:00Z",
       "primary_metric": "joins", "guardrails": ["reports"],
       "arms": [{"name": "control", "weight": 0.5}, {"name": "low_c", "weight": 0.5, "override": {"scorer.c": 5.0}}]}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    path = tmp_path_factory.mktemp("dash-exp-store")
    with open_store(path) as st:
        for part in simulate(200, 20, seed=11):
            write_world(st, part, progress=False)
    with run_server(path, {"BELONG_BUDGET_SOURCES_MS": "30000"}) as (base, _):
        yield base


def _login(c: httpx.Client) -> str:
    token = re.search(r'name="token" value="([^"]+)"', c.get("/dashboard/login").text).group(1)  # type: ignore[union-attr]
    assert c.post("/dashboard/login", data={"token": token, "key": ADMIN_KEY}).status_code == 303
    return re.search(r'name="csrf" value="([^"]+)"', c.get("/dashboard/experiments").text).group(1)  # type: ignore[union-attr]


def _cells(html: str, attr: str, key: str) -> list[str]:
    row = re.search(rf'<tr {attr}="{re.escape(key)}">(.*?)</tr>', html, re.S)
    assert row, (attr, key)
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row.group(1), re.S)]


def test_the_page_shows_the_analysis_and_stops_with_csrf(api: str) -> None:
    with httpx.Client(base_url=api, timeout=120) as c:
        csrf = _login(c)
        assert "No experiments yet" in c.get("/dashboard/experiments").text
        assert c.post("/v1/experiments", json=EXP, headers=auth(ADMIN_KEY)).status_code == 201
        users = [f"u{i}" for i in range(60)]
        joined = []
        for i, u in enumerate(users):
            r = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 5})
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            if items and i % 2 == 0:
                joined.append({"event_id": f"dx-{u}", "ts": time.time(), "type": "join", "actor": u,
                               "target": items[0]["id"]})
        assert c.post("/v1/events", json={"events": joined}, headers=auth(WRITE_KEY)).status_code == 202
        time.sleep(1.0)  # exposures flushed, the joins in the past
        page = c.get("/dashboard/experiments").text
        assert _cells(page, "data-experiment", "dash_exp")[2] == "running"
        r = c.get("/dashboard/experiments", params={"name": "dash_exp"})
        assert r.status_code == 200
        api_result = c.get("/v1/experiments/dash_exp/results").json()
        for arm in api_result["arms"]:
            cells = _cells(r.text, "data-arm", arm["arm"])
            assert [int(x.replace(",", "")) for x in cells[2:5]] == [arm["units"], arm["users"], arm["exposures"]]
        assert sum(a["exposures"] for a in api_result["arms"]) >= 50
        joins = api_result["metrics"]["joins"][0]
        cells = _cells(r.text, "data-metric", "joins")
        assert cells[1] == "low_c" and int(cells[2]) == joins["n"]
        assert cells[5] == f"{joins['effect']:.3g}" and cells[7] == f"[{joins['ci_low']:.3g}, {joins['ci_high']:.3g}]"
        assert cells[9] == f"[{joins['av_ci_low']:.3g}, {joins['av_ci_high']:.3g}]"
        srm = api_result["srm"]
        assert ("SRM flagged" in r.text) == bool(srm["flagged"]) and f"{srm['chi2']:.4g}" in r.text
        assert 'id="guardrails"' in r.text and "reports" in r.text
        assert r.text.count('<svg class="chart"') >= 1  # the joins' effect over days
        # a stop without the token changes nothing; with it, the API sees it stopped
        for data in ({"do": "stop", "name": "dash_exp"}, {"do": "stop", "name": "dash_exp", "csrf": "x" + csrf}):
            assert c.post("/dashboard/experiments", data=data).status_code == 403
        assert c.get("/v1/experiments/dash_exp").json()["status"] == "running"
        assert c.post("/dashboard/experiments", data={"do": "stop", "name": "nope", "csrf": csrf}).status_code == 404
        assert c.post("/dashboard/experiments", data={"do": "fly", "name": "dash_exp", "csrf": csrf}
                      ).status_code == 422
        r = c.post("/dashboard/experiments", data={"do": "stop", "name": "dash_exp", "csrf": csrf})
        assert r.status_code == 303
        r = c.get(r.headers["location"])
        assert "Stopped experiment dash_exp." in r.text
        assert _cells(r.text, "data-experiment", "dash_exp")[2] == "stopped"
        assert 'aria-label="Stop dash_exp"' not in r.text
        assert c.get("/v1/experiments/dash_exp").json()["status"] == "stopped"
        body = c.get("/v1/recommendations/communities", params={"user_id": "u1", "k": 5}).json()
        assert body["experiments"] == []
        r = c.post("/dashboard/experiments", data={"do": "stop", "name": "dash_exp", "csrf": csrf})
        assert r.status_code == 422 and "already stopped" in r.text
        assert c.get("/dashboard/experiments", params={"name": "nope"}).status_code == 404
        c.cookies.clear()
        assert c.get("/dashboard/experiments").status_code == 303


def test_a_guardrail_is_flagged_when_its_interval_lies_above_zero() -> None:
    result = {"guardrails": ["reports", "blocks"], "skipped_metrics": {"blocks": "fewer than 2 units in an arm"},
              "metrics": {"reports": [{"arm": "a", "effect": 0.2, "ci_low": 0.05, "ci_high": 0.35},
                                      {"arm": "b", "effect": 0.1, "ci_low": -0.01, "ci_high": 0.21},
                                      {"arm": "c", "effect": -0.3, "ci_low": -0.5, "ci_high": -0.1}], "blocks": []}}
    flags = experiment_view.guardrail_flags(result)
    assert [(f["arm"], f["flagged"]) for f in flags] == [("a", True), ("b", False), ("c", False), (None, False)]
    assert flags[-1]["why"] == "fewer than 2 units in an arm"


def test_the_interval_chart_places_effects_and_bounds_on_one_scale() -> None:
    pts = [{"day": 1, "effect": 1.0, "ci_low": -1.0, "ci_high": 3.0, "av_ci_low": -2.0, "av_ci_high": 4.0},
           {"day": 3, "effect": 2.0, "ci_low": 1.0, "ci_high": 3.0, "av_ci_low": 0.0, "av_ci_high": 4.0}]
    svg = str(charts.intervals([("b", pts)], "effect <by> day", width=452, height=238))
    assert svg.startswith('<svg class="chart" role="img"') and "effect &lt;by&gt; day" in svg
    # y spans [-2, 4] over pixels 8..208 (200 px): a value v sits at 8 + 200 * (4 - v) / 6; x spans 52..440
    circles = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg)
    assert [(float(x), float(y)) for x, y in circles] == [(52.0, pytest.approx(108.0, abs=0.06)),
                                                          (440.0, pytest.approx(74.7, abs=0.06))]
    zero = re.search(r'<line x1="52" y1="([\d.]+)" x2="444" y2="[\d.]+" class="ref"/>', svg)
    assert zero and float(zero.group(1)) == pytest.approx(8 + 200 * 4 / 6, abs=0.06)
    assert svg.count('class="series s0 ci"') == 2 and svg.count('class="series s0 av"') == 4
    assert str(charts.intervals([("b", [])], "empty")) == ""
