"""The closed loop over HTTP (docs/LOOP.md, "HTTP mode"): a real ``belong serve`` subprocess on a tiny world,
trained by ``belong train``, the scenario declared as the server's experiment, lists fetched over HTTP, events and
impressions posted, a retrain hot-swapped in. No mocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from belong.domain import Event, EventType, TargetKind
from belong.loop import scenario
from belong.loop.backend import Impression
from belong.loop.http import HttpBackend, event_row
from belong.loop.runner import assign
from belong.simulate import SimConfig, simulate_world

TREND = Path(scenario.__file__).parent / "scenarios" / "surfaces" / "trending.toml"
# a world whose log ends at the simulation's end: the clock of the state `belong train` builds from the log (its
# last event) is then the loop's on the first day (docs/LOOP.md, "HTTP mode")
USERS, COMMUNITIES, SEED = 300, 40, 5


def _scenario(tmp: Path, **run: object) -> scenario.Scenario:
    opts = {"days": 2, "retrain_days": 1, "k": 5, "truth_sample": 40, **run}
    p = tmp / "tiny_http.toml"
    p.write_text(
        f'name = "tiny_http"\ncontrol = "trending"\n[world]\nusers = {USERS}\ncommunities = {COMMUNITIES}\n'
        f"seed = {SEED}\n[run]\n" + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in opts.items())
        + f'[[arms]]\nname = "trending"\nsurface = "{TREND}"\n[[arms]]\nname = "blend"\nsurface = "communities"\n')
    return scenario.load(p)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpBackend]:
    tmp = tmp_path_factory.mktemp("loop-http")
    sc = _scenario(tmp)
    uids = [f"u{i}" for i in range(USERS)]
    b = HttpBackend(sc, simulate_world(USERS, COMMUNITIES, SEED), uids, assign(sc, uids), uids,
                    workdir=tmp / "run", concurrency=3)
    try:
        b.retrain(0, None)
        yield b
    finally:
        b.close()


def test_lists_over_http_agree_with_the_loops_assignment(backend: HttpBackend) -> None:
    users = list(range(60))
    own = [backend.serve(int(backend.arm_of[u]), [u])[0] for u in users[:20]]
    assert all(len(s.comms) == 5 and s.request_id for s in own)
    both = [backend.serve(a, users) for a in range(2)]
    assert backend.mismatches == 0
    # the same person under the two arms: trending and the blend differ for most people
    differ = sum(not np.array_equal(x.comms, y.comms) for x, y in zip(both[0], both[1], strict=True))
    assert differ > len(users) // 2
    # the same arm asked twice (no candidate cache, state unchanged): the same list
    again = backend.serve(1, users)
    assert all(np.array_equal(x.comms, y.comms) for x, y in zip(both[1], again, strict=True))
    stats = backend.stats()
    assert stats["errors_5xx"] == 0 and stats["degraded_lists"] == 0 and stats["failed_lists"] == 0
    assert stats["routes"]["recommendations"]["status"] == {"200": stats["routes"]["recommendations"]["calls"]}
    assert stats["routes"]["recommendations (arm=)"]["calls"] > 0


def test_first_day_lists_are_the_in_process_twins(backend: HttpBackend, tmp_path: Path) -> None:
    """The same world, both trained at day 0: every person's list under each arm is the same over HTTP and in
    process (:mod:`belong.loop.twin`: the same store, training, state order, arms, request seed and clock), and so
    is every propensity. The direct backend (on the loop's own state) is not held to it."""
    from belong.loop.twin import TwinBackend

    twin = TwinBackend(backend.sc, simulate_world(USERS, COMMUNITIES, SEED), backend.uids, workdir=tmp_path / "twin")
    try:
        twin.retrain(0)
        users = list(range(USERS))
        for arm in range(2):
            mine, http = twin.serve(arm, users, 0), backend.serve(arm, users)
            assert [s.comms.tolist() for s in mine] == [s.comms.tolist() for s in http]
            assert [s.propensity.tolist() for s in mine] == [s.propensity.tolist() for s in http]
        assert backend.mismatches == 0
    finally:
        twin.close()


def test_arm_needs_an_admin_key_and_a_known_arm(backend: HttpBackend) -> None:
    with httpx.Client(base_url=backend.base, timeout=60) as c:
        q = {"user_id": "u1", "k": "3", "arm": "blend"}
        r = c.get("/v1/recommendations/communities", params=q, headers=backend._auth("read"))
        assert r.status_code == 403 and "admin" in r.json()["message"]
        r = c.get("/v1/recommendations/communities", params={**q, "arm": "nope"}, headers=backend._auth("admin"))
        assert r.status_code == 422 and r.json()["field"] == "arm"
        r = c.get("/v1/recommendations/communities", params=q, headers=backend._auth("admin"))
        assert r.status_code == 200 and r.json()["experiments"] == [{"name": "tiny_http", "arm": "blend"}]


def test_events_and_impressions_land_in_the_log_and_a_retrain_is_hot_swapped(backend: HttpBackend) -> None:
    from belong.eventlog import open_store

    users = list(range(40))
    slates = [backend.serve(int(backend.arm_of[u]), [u])[0] for u in users]
    now = SimConfig(USERS, COMMUNITIES, SEED).end_us + 1000
    events = [Event(event_id=f"loop-test-{u}", ts_us=now + u, type=EventType.JOIN, actor=f"u{u}",
                    target=f"c{int(s.comms[0])}", target_kind=TargetKind.COMMUNITY) for u, s in zip(users, slates,
                                                                                                  strict=True)]
    assert event_row(events[0])["ts"].endswith("+00:00") and len(event_row(events[0])["ts"]) > 25  # microseconds
    imps = [Impression(f"u{u}", s.request_id, now + u, tuple((f"c{int(c)}", p, float(q)) for p, (c, q) in
                                                             enumerate(zip(s.comms, s.propensity, strict=True))))
            for u, s in zip(users, slates, strict=True)]
    with open_store(backend.store, create=False) as st:
        before = st.position()
    backend.record(events, imps)
    with open_store(backend.store, create=False) as st:
        rows = st.read_events(after_seq=before)
    types = rows.column("type").to_pylist()
    assert types.count("join") == len(events) and types.count("impression") == 5 * len(users)
    joined_ts = [t for t, ty in zip(rows.column("ts_us").to_pylist(), types, strict=True) if ty == "join"]
    assert sorted(joined_ts) == [e.ts_us for e in events]  # exact timestamps
    # the joined community is gone from the person's next list (the live state folded the join)
    after = backend.serve(int(backend.arm_of[0]), [0])[0]
    assert int(slates[0].comms[0]) not in after.comms.tolist()
    old = backend.version
    rec = backend.retrain(1, None)
    assert rec["version"] != old and rec["swap_s"] >= 0
    with httpx.Client(base_url=backend.base, timeout=60) as c:
        assert c.get("/v1/models", headers=backend._auth("read")).json()["active"] == rec["version"]
    assert backend.serve(0, [1])[0].comms.size == 5
    assert backend.stats()["errors_5xx"] == 0


def test_own_lists_are_exposures_and_arm_lists_are_not(backend: HttpBackend) -> None:
    import time
    from contextlib import closing

    from belong.experiments.store import open_experiments

    users = list(range(100, 140))
    own = backend.serve(0, [u for u in users if backend.arm_of[u] == 0])
    other = backend.serve(0, [u for u in users if backend.arm_of[u] != 0])
    assert own and other
    time.sleep(1.0)  # the server writes exposures every 0.2 s
    with closing(open_experiments(str(backend.store))) as ex:
        exposed = {e.request_id for e in ex.exposures(backend.experiment)}
    assert all(s.request_id in exposed for s in own)
    assert not any(s.request_id in exposed for s in other)


def test_a_run_over_http_and_in_process_give_the_same_result(tmp_path: Path) -> None:
    """A whole run over HTTP (two trainings: one start, one hot swap): zero 5xx, the arms the server assigned are
    the loop's, impressions and events in the server's log, the report's API section; and the in-process run of
    the same scenario and seed (:mod:`belong.loop.twin`) gives the same result: every day's figures, the truth and
    the effects, to the last digit (docs/LOOP.md, "Same seed, two modes")."""
    from belong.eventlog import open_store
    from belong.loop import http, report, runner

    sc = _scenario(tmp_path, days=2, retrain_days=1)
    res = runner.run(sc.with_overrides(mode="http"), backend=http.factory(tmp_path / "work", concurrency=3))
    inp = runner.run(sc)
    api = res["backend"]
    assert api["mode"] == "http" and api["errors_5xx"] == 0 and api["failed_lists"] == 0
    assert api["arm_disagreements"] == 0 and api["degraded_lists"] == 0
    visitors = sum(m["visitors"] for r in res["daily"] for m in r["arms"].values())
    assert api["routes"]["recommendations"]["calls"] >= visitors
    assert api["routes"]["impressions"]["status"] == {"202": api["routes"]["impressions"]["calls"]}
    assert api["cpu_s"]["server_serving"] > 0 and api["cpu_s"]["train"] > 0
    assert [r["day"] for r in res["retrains"]] == [0, 1] and "swap_s" in res["retrains"][1]
    with open_store(tmp_path / "work" / "tiny_http-user" / "store", create=False) as st:
        logged = st.read_events(types=["impression", "join"]).column("type").to_pylist()
    assert logged.count("impression") == sum(m["impressions"] for r in res["daily"] for m in r["arms"].values())
    html = report.render(res, timings=False)
    assert "The API during the run" in html and "p99_ms" not in html
    assert "p99_ms" in report.render(res)
    assert inp["backend"]["mode"] == "inprocess"
    assert res["daily"] == inp["daily"]  # the same lists: the same joins, leaves and expected joins every day
    assert res["effects"] == inp["effects"]


def test_a_cluster_run_is_assigned_by_the_loops_clusters_and_the_same_seed_gives_the_same_report(
        tmp_path: Path) -> None:
    """unit = "cluster": the loop's friend clusters are saved with the server's experiment, and every list the
    server serves names the arm of the person's cluster. Run twice (two stores, two servers, two trainings): the
    same report, byte for byte, wall-clock figures left out."""
    from belong.loop import http, report, runner

    sc = _scenario(tmp_path, days=1, retrain_days=2).with_overrides(unit="cluster", mode="http")
    res = runner.run(sc, backend=http.factory(None, concurrency=3))
    api = res["backend"]
    assert res["units"] < USERS and api["arm_disagreements"] == 0 and api["errors_5xx"] == 0
    assert api["routes"]["recommendations"]["calls"] > 0
    again = runner.run(sc, backend=http.factory(None, concurrency=2))
    assert report.render(again, timings=False) == report.render(res, timings=False)


def test_an_off_policy_run_over_http_re_runs_what_the_server_served(tmp_path: Path) -> None:
    """Scenario (d) over HTTP: the loop keeps a shadow of the server (the same artifact on the same log, the same
    event batches folded in), so every logged list's re-run reproduces its logged propensity, and the off-policy
    result is the in-process twin's, to the last digit (docs/LOOP.md)."""
    from belong.loop import http, runner

    surf = Path(scenario.__file__).parent / "scenarios" / "surfaces"
    p = tmp_path / "ope.toml"
    p.write_text('name = "tinyope"\ncontrol = "explore"\n[world]\nusers = 250\ncommunities = 30\nseed = 5\n'
                 '[run]\ndays = 3\nretrain_days = 2\nk = 6\ntruth_sample = 80\n'
                 '[ope]\nlogging = "explore"\nlists_per_day = 40\n'
                 f'[[arms]]\nname = "explore"\nsurface = "{surf / "communities_explore.toml"}"\n'
                 f'[[arms]]\nname = "greedy"\nsurface = "{surf / "communities_greedy.toml"}"\n')
    sc = scenario.load(p)
    res = runner.run(sc.with_overrides(mode="http"), backend=http.factory(tmp_path / "work", concurrency=3))
    inp = runner.run(sc)
    assert res["backend"]["errors_5xx"] == 0 and res["backend"]["arm_disagreements"] == 0
    assert all("shadow_s" in r for r in res["retrains"])
    (t,) = res["offpolicy"]["targets"]
    assert t["info"]["slot_rounds"] > 0 and t["info"]["logging_propensity_mismatches"] == 0
    assert res["offpolicy"] == inp["offpolicy"]
    assert res["daily"] == inp["daily"]
