"""End to end on a small simulated world: create an experiment (CLI), serve requests through the real API process,
post impressions and joins, read the per-unit table and the analysis."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from belong.experiments.assign import arm_of
from belong.experiments.declaration import from_stored as parse_stored
from belong.experiments.metrics import MetricData, experiment_impressions, read_events
from belong.experiments.store import open_experiments
from cli_runner import run_cli
from serve_helpers import ADMIN_KEY, WRITE_KEY, auth, run_server

DECL = """
name = "rrf_c"
surface = "communities"
layer = "communities"
start = "2020-01-01T00:00:00Z"
primary_metric = "joins"
guardrails = ["reports"]

[[arms]]
name = "control"
weight = 0.5

[[arms]]
name = "low_c"
weight = 0.5
override = { "scorer.c" = 5.0, "sources.trending.weight" = 1.5 }
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate

    path = tmp_path_factory.mktemp("exp-store")
    with open_store(path) as st:
        for part in simulate(300, 30, seed=5):
            write_world(st, part, progress=False)
    return path


@pytest.fixture(scope="module")
def api(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    decl = tmp_path_factory.mktemp("decl") / "rrf_c.toml"
    decl.write_text(DECL)
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run([belong, "experiment", "create", str(decl), "--store", str(world)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    with run_server(world, {"BELONG_BUDGET_SOURCES_MS": "30000"}, "--materialize") as (base, _):
        yield base


def _users(world: Path, n: int) -> list[str]:
    from belong.eventlog import open_store

    with open_store(world) as st:
        return st.users().column("id").to_pylist()[:n]


def test_serve_expose_and_analyze(world: Path, api: str) -> None:
    with open_experiments(world) as st:
        decl = st.get("rrf_c").declaration
    users = _users(world, 40)
    served: dict[str, tuple[str, list[str]]] = {}
    exposed: set[str] = set()
    with httpx.Client(base_url=api, timeout=60) as c:
        for u in users:
            r = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 5})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["experiments"] == [{"name": "rrf_c", "arm": arm_of(decl, u)}]
            items = body["items"]
            served[u] = (body["request_id"], [it["id"] for it in items])
            if not items:
                continue
            exposed.add(body["request_id"])
            imp = {"request_id": body["request_id"], "user_id": u, "surface": "communities",
                   "items": [{"item_id": it["id"], "position": it["position"], "propensity": it["propensity"]}
                             for it in items]}
            assert c.post("/v1/impressions", json=imp, headers=auth(WRITE_KEY)).status_code == 202
        # a new user is assigned at its first request, like everyone (nothing stored)
        fresh = c.get("/v1/recommendations/communities", params={"user_id": "brand-new-1", "k": 5, "locale": "en"})
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["experiments"] == [{"name": "rrf_c", "arm": arm_of(decl, "brand-new-1")}]
        if fresh.json()["items"]:
            exposed.add(fresh.json()["request_id"])  # exposed; no impressions posted for it
        # an error serves no list: no exposure
        assert c.get("/v1/recommendations/communities", params={"user_id": "nobody-at-all", "k": 5}).status_code == 404
        # the people surface is in no experiment: its answers name none
        r = c.get("/v1/recommendations/people", params={"user_id": users[0], "k": 3})
        assert r.status_code == 200 and r.json()["experiments"] == []
        # every second user joins the first community shown to them
        now = time.time()
        joiners = [u for i, u in enumerate(users) if i % 2 == 0 and served[u][1]]
        events = [{"event_id": f"e2e-join-{u}", "ts": now + 1, "type": "join", "actor": u,
                   "target": served[u][1][0]} for u in joiners]
        assert c.post("/v1/events", json={"events": events}, headers=auth(WRITE_KEY)).status_code == 202
        listed = c.get("/v1/experiments").json()["experiments"]
        assert [e["name"] for e in listed] == ["rrf_c"]
        bad = c.post("/v1/experiments", json={"name": "x", "surface": "communities", "primary_metric": "revenue",
                                              "arms": [{"name": "a", "weight": 0.5}, {"name": "b", "weight": 0.5}]},
                     headers=auth(ADMIN_KEY))
        assert bad.status_code == 422 and bad.json()["field"] == "primary_metric"
        assert c.post("/v1/experiments", json={}, headers=auth(WRITE_KEY)).status_code == 403
        bad = c.post("/v1/experiments", json={"name": "y", "surface": "communities", "layer": "m",
                                              "arms": [{"name": "a", "weight": 0.5},
                                                       {"name": "b", "weight": 0.5, "model": "v-nope"}]},
                     headers=auth(ADMIN_KEY))
        assert bad.status_code == 422 and bad.json()["field"] == "arms[1].model"
        # exposures reach the store within the flush interval
        deadline = time.monotonic() + 10
        while True:
            with open_experiments(world) as st:
                exposures = st.exposures("rrf_c")
            if len(exposures) >= len(exposed) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert {e.request_id for e in exposures} == exposed
    assert all(e.arm == arm_of(decl, e.user_id) for e in exposures)
    assert "nobody-at-all" not in {e.user_id for e in exposures}
    # the per-unit table: one row per exposed user, its joins of recommended communities as posted
    data = MetricData(read_events(str(world), 0, int(time.time() * 1e6) + 10_000_000), exposures)
    table = data.table(int(time.time() * 1e6) + 10_000_000)
    assert set(table.users) == {e.user_id for e in exposures}
    want = np.array([1.0 if u in joiners else 0.0 for u in table.users])
    np.testing.assert_array_equal(table.post["joins"], want)
    shown = {u: len(items) for u, (_, items) in served.items()}
    np.testing.assert_array_equal(table.post["impressions"], [shown.get(u, 0) for u in table.users])

    # every impression posted for an exposed answer carries its experiment and arm
    imps = experiment_impressions(str(world), exposures)
    assert len(imps) == sum(len(items) for _, items in served.values())
    assert (imps["arm"] == [arm_of(decl, u) for u in imps["user"]]).all() and (imps["experiment"] == "rrf_c").all()

    time.sleep(max(0.0, now + 1.5 - time.time()))  # the joins (posted 1 s ahead) are in the past for the analysis
    with httpx.Client(base_url=api, timeout=120) as c:
        res = c.get("/v1/experiments/rrf_c/results")
    assert res.status_code == 200, res.text
    out = res.json()
    arms = {a["arm"]: a for a in out["arms"]}
    assert sum(a["users"] for a in arms.values()) == len(table)
    assert {e["arm"] for e in out["metrics"]["joins"]} == {"low_c"}
    # the analysis read the same per-unit table: its raw arm means are the table's
    joins = out["metrics"]["joins"][0]
    arms_of = np.asarray(table.arms, dtype=str)
    assert joins["n"] == int((arms_of == "low_c").sum())
    assert joins["mean"] == pytest.approx(table.post["joins"][arms_of == "low_c"].mean())
    assert joins["control_mean"] == pytest.approx(table.post["joins"][arms_of == "control"].mean())
    assert out["srm"]["flagged"] in (True, False) and out["days"]


def test_cli_list_show_stop(world: Path, api: str, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "experiment", "list", "--store", str(world), "--json")
    assert code == 0 and "rrf_c" in out
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "show", "nope", "--store", str(world))
    assert code == 2 and "nope" in err
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "create", "/nonexistent.toml", "--store", str(world))
    assert code == 2 and "file" in err


def test_api_create_force_and_stop(world: Path, api: str) -> None:
    users = _users(world, 5)
    body = {"name": "pymk_try", "surface": "people", "layer": "people", "start": "2020-01-01T00:00:00Z",
            "primary_metric": "pymk_accepts",
            "arms": [{"name": "control", "weight": 0.5}, {"name": "wide", "weight": 0.5}]}
    with httpx.Client(base_url=api, timeout=60) as c:
        created = c.post("/v1/experiments", json=body, headers=auth(ADMIN_KEY))
        assert created.status_code == 201, created.text
        with open_experiments(world) as st:
            decl = st.get("pymk_try").declaration
        got = c.get("/v1/recommendations/people", params={"user_id": users[0], "k": 3}).json()
        assert got["experiments"] == [{"name": "pymk_try", "arm": arm_of(decl, users[0])}]
        # a forced arm wins over the bucket at once
        rrf = c.get("/v1/experiments/rrf_c").json()
        assert rrf["history"][0]["change"] == "create"
        other = "control" if arm_of(parse_stored(rrf["declaration"]), users[1]) == "low_c" else "low_c"
        forced = c.post("/v1/experiments/rrf_c/force", json={"user_id": users[1], "arm": other},
                        headers=auth(ADMIN_KEY))
        assert forced.status_code == 200, forced.text
        got = c.get("/v1/recommendations/communities", params={"user_id": users[1], "k": 3}).json()
        assert got["experiments"] == [{"name": "rrf_c", "arm": other}]
        bad = c.post("/v1/experiments/rrf_c/force", json={"user_id": users[1], "arm": "nope"},
                     headers=auth(ADMIN_KEY))
        assert bad.status_code == 422 and bad.json()["field"] == "arm"
        assert c.post("/v1/experiments/nope/stop", headers=auth(ADMIN_KEY)).status_code == 404
        assert c.post("/v1/experiments/pymk_try/stop", headers=auth(ADMIN_KEY)).status_code == 200
        got = c.get("/v1/recommendations/people", params={"user_id": users[0], "k": 3}).json()
        assert got["experiments"] == []


def test_an_arm_served_by_another_loaded_model_version(world: Path, api: str) -> None:
    users = _users(world, 30)
    with httpx.Client(base_url=api, timeout=120) as c:
        built = c.post("/v1/models", headers=auth(ADMIN_KEY))  # a second version, loaded but not active
        assert built.status_code == 201, built.text
        models = built.json()
        other = next(v["version"] for v in models["versions"] if v["version"] != models["active"])
        body = {"name": "by_model", "surface": "content", "layer": "content", "start": "2020-01-01T00:00:00Z",
                "primary_metric": "messages",
                "arms": [{"name": "control", "weight": 0.5}, {"name": "next", "weight": 0.5, "model": other}]}
        assert c.post("/v1/experiments", json=body, headers=auth(ADMIN_KEY)).status_code == 201
        with open_experiments(world) as st:
            decl = st.get("by_model").declaration
        arms = set()
        for u in users:
            r = c.get("/v1/recommendations/content", params={"user_id": u, "k": 3})
            assert r.status_code == 200, r.text
            got = r.json()
            assert got["experiments"] == [{"name": "by_model", "arm": arm_of(decl, u)}]
            arms.add(got["experiments"][0]["arm"])
            # the arm's answer comes from that version, and says so
            assert got["model_version"] == (other if arm_of(decl, u) == "next" else models["active"])
        assert arms == {"control", "next"}
        assert c.post("/v1/experiments/by_model/stop", headers=auth(ADMIN_KEY)).status_code == 200


def test_cli_analyze_json_and_report(world: Path, api: str, monkeypatch, capsys, tmp_path) -> None:
    import json

    report = tmp_path / "rrf_c.html"
    code, out, err = run_cli(monkeypatch, capsys, "experiment", "analyze", "rrf_c", "--store", str(world), "--json",
                             "--report", str(report))
    assert code == 0, err
    result = json.loads(out)
    assert result["experiment"] == "rrf_c" and set(result["metrics"]) >= {"joins", "reports", "messages"}
    assert result["days"][-1]["arms"] == result["arms"] and result["days"][-1]["end"] == result["as_of"]
    page = report.read_text()
    assert page.count("data:image/png;base64,") >= 2 and "rrf_c" in page
    code, out, _ = run_cli(monkeypatch, capsys, "experiment", "analyze", "rrf_c", "--store", str(world))
    assert code == 0 and "joins" in out
    code, _, err = run_cli(monkeypatch, capsys, "experiment", "stop", "rrf_c", "--store", str(world))
    assert code == 0
    with open_experiments(world) as st:
        assert st.get("rrf_c").status == "stopped"
        assert [h["change"] for h in st.history("rrf_c")] == ["create", "stop"]
