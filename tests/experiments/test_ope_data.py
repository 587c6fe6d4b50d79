"""belong.experiments.ope_data and ``belong ope`` on a real (embedded) store: a simulated world, then lists served
by an exploring surface logged as impression events with their propensities, and joins of some shown items."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import belong.ranking  # noqa: F401 - registers the mmr selector
from belong import surfaces
from belong.bench.ope import bench_ope
from belong.datasets import write_world
from belong.domain import Event, EventType, Surface, TargetKind
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.experiments.ope_data import evaluate_store, logged_lists
from belong.pipeline.types import Request
from belong.simulate import simulate_world
from belong.state import DAY_US, as_of, from_store
from cli_runner import run_cli

SURFACE = """
surface = "communities"
[[sources]]
type = "co_membership"
model = "itemknn"
k = 60
[[sources]]
type = "trending"
k = 30
[[sources]]
type = "new_communities"
k = 20
[[filters]]
type = "safety_rules"
[scorer]
type = "weighted_rrf"
[selector]
type = "mmr"
relevance = 1.0
epsilon = {eps}
explore_slot = 3
explore_source = "{explore}"
"""
EPS_LOG = 0.3
K = 5


def _surface(tmp_path, name: str, eps: float, explore: str = "new_communities"):
    path = tmp_path / f"{name}.toml"
    path.write_text(SURFACE.format(eps=eps, explore=explore), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A store whose last day holds 120 logged lists of an exploring surface, and joins of shown items."""
    tmp = tmp_path_factory.mktemp("ope")
    store = str(tmp / "store")
    world = simulate_world(700, 70, seed=11)
    with open_store(store) as st:
        write_world(st, world, progress=False)
    logging = _surface(tmp, "logging", EPS_LOG)
    t0 = int(world.events.column("ts_us").to_numpy().max()) + DAY_US
    state = as_of(from_store(store), t0)  # the serving state's clock at the first list
    pipe = surfaces.load(logging)
    pipe.fit(state)
    rng = np.random.default_rng(0)
    events = []
    users = [u for u in state.users.ids if state.communities_of(state.users.index[u]).size][:120]
    for i, user in enumerate(users):
        ts = t0 + i * 1_000_000
        fin = pipe.finish(Request(user, Surface.COMMUNITIES, k=K, seed=i, explain=False),
                          pipe.candidates(Request(user, Surface.COMMUNITIES, k=K, seed=i, explain=False)).ranked)
        for pos, (m, _) in enumerate(fin.chosen):
            item = pipe.item_id(m.item)
            events.append(Event(event_id=f"imp-{i}-{pos}", ts_us=ts, type=EventType.IMPRESSION, actor=user,
                                target=item, target_kind=TargetKind.COMMUNITY, request_id=f"r{i}",
                                surface=Surface.COMMUNITIES, position=pos,
                                propensity=float(m.features["propensity"])))
            if rng.random() < (0.5 if pos == 2 else 0.15):  # a join an hour later
                events.append(Event(event_id=f"join-{i}-{pos}", ts_us=ts + 3_600_000_000, type=EventType.JOIN,
                                    actor=user, target=item, target_kind=TargetKind.COMMUNITY))
    with open_store(store) as st:
        st.append(events)
    return {"store": store, "logging": logging, "tmp": tmp, "t0": t0, "n": len(users)}


def test_logged_lists_join_rewards_within_the_window(logged):
    with open_store(logged["store"], create=False) as st:
        events = st.read_events()
    lists = logged_lists(events, Surface.COMMUNITIES, window_us=DAY_US)
    assert len(lists) == logged["n"]
    assert all(len(lst.items) <= K and lst.propensity[0] == 1.0 for lst in lists)
    assert any(p < 1.0 for lst in lists for p in lst.propensity)  # the exploration slot's propensities
    n_joins = sum(1 for e in events.column("event_id").to_pylist() if e.startswith("join-"))
    assert sum(sum(lst.reward) for lst in lists) == n_joins
    # a window shorter than the hour to the join sees no reward
    assert sum(sum(lst.reward) for lst in logged_lists(events, Surface.COMMUNITIES, window_us=60_000_000)) == 0


def test_the_logging_policy_evaluated_on_its_own_log_is_its_logged_value(logged):
    out = evaluate_store(logged["store"], logged["logging"], logging=logged["logging"], window_days=1.0)
    assert out["logging_propensity_mismatches"] == 0  # the contexts re-create the logged distributions exactly
    slot = out["slot"]
    n = out["slot_rounds"]
    assert n > 50 and not out["warnings"]
    assert slot["ips"]["value"] == pytest.approx(out["logged_value_at_slot"])
    assert slot["snips"]["value"] == pytest.approx(out["logged_value_at_slot"])
    assert slot["ips"]["ess"] == pytest.approx(n) and slot["ips"]["max_weight"] == pytest.approx(1.0)
    assert out["lists"]["standard_ips"]["max_weight"] == pytest.approx(1.0)


def test_a_more_exploring_policy_is_weighted_by_hand(logged):
    eps = 0.6
    policy = _surface(logged["tmp"], "explore_more", eps)
    out = evaluate_store(logged["store"], policy, logging=logged["logging"], window_days=1.0)
    assert not out["warnings"]
    with open_store(logged["store"], create=False) as st:
        lists = logged_lists(st.read_events(), Surface.COMMUNITIES, window_us=DAY_US)
    # the logged propensity says whether the greedy item was kept (p = 1 - 0.3, or 1 with an empty pool) or one
    # of m pool items drawn (p = 0.3/m); the new policy gives 1 - eps (1 with an empty pool) or eps/m
    terms = []
    for lst in lists:
        if len(lst.items) < 3:
            continue
        p, r = lst.propensity[2], lst.reward[2]
        if p == 1.0:
            pi = 1.0
        elif p == pytest.approx(1 - EPS_LOG):
            pi = 1 - eps
        else:
            pi = eps * p / EPS_LOG
        terms.append((pi / p, r))
    w = np.array([t[0] for t in terms])
    r = np.array([t[1] for t in terms])
    assert out["slot"]["ips"]["value"] == pytest.approx(float((w * r).mean()), rel=1e-9)
    assert out["slot"]["snips"]["value"] == pytest.approx(float((w * r).sum() / w.sum()), rel=1e-9)
    assert out["slot"]["ips"]["max_weight"] == pytest.approx(float(w.max()))


def test_an_artifact_as_the_policy(logged):
    """``--policy`` may be a ``belong train`` artifact: its surface of the logged kind, loaded on the contexts."""
    from belong.training.train import train

    policy = _surface(logged["tmp"], "artifact_policy", 0.6)
    manifest = train(logged["store"], logged["tmp"] / "models", [policy])
    by_artifact = evaluate_store(logged["store"], manifest["path"], logging=logged["logging"], window_days=1.0)
    by_surface = evaluate_store(logged["store"], policy, logging=logged["logging"], window_days=1.0)
    assert by_artifact["slot_rounds"] == by_surface["slot_rounds"] > 0 and by_artifact["policy"] == manifest["path"]
    # the artifact's sources were fitted on the whole log (the logged period too), so its lists may differ from
    # what the logging policy could show: an estimate, or the refusal saying why
    ips = by_artifact["slot"]["ips"]
    assert (ips["value"] is not None and ips["ess"] > 1) or "never takes" in ips["warning"]
    with pytest.raises(ValidationError) as e:
        evaluate_store(logged["store"], str(logged["tmp"]), logging=logged["logging"])
    assert e.value.field == "policy"


def test_a_policy_exploring_where_logging_never_did_is_refused(logged):
    policy = _surface(logged["tmp"], "explore_trending", 0.5, explore="trending")
    out = evaluate_store(logged["store"], policy, logging=logged["logging"], window_days=1.0)
    for e in out["slot"].values():
        assert e["value"] is None and "never takes" in e["warning"]
    assert out["warnings"]


def test_a_policy_exploring_at_another_position_is_refused_for_whole_lists(logged):
    """Exploring at position 2, where logging always showed its greedy item: whole-list estimates are refused;
    at logging's slot (position 3) the new policy is deterministic and its greedy item is in logging's support."""
    path = logged["tmp"] / "slot2.toml"
    path.write_text(SURFACE.format(eps=0.5, explore="new_communities").replace("explore_slot = 3",
                                                                               "explore_slot = 2"))
    out = evaluate_store(logged["store"], str(path), logging=logged["logging"], window_days=1.0)
    for e in out["lists"].values():
        assert e["value"] is None and "never shows" in e["warning"]
    assert out["slot"]["ips"]["value"] is not None and out["slot"]["ips"]["warning"] is None


def test_cli_ope(logged, monkeypatch, capsys):
    code, outp, err = run_cli(monkeypatch, capsys, "ope", "--policy", logged["logging"], "--logging",
                              logged["logging"], "--store", logged["store"], "--window-days", "1", "--json")
    assert code == 0, err
    data = json.loads(outp)
    assert set(data["slot"]) == {"ips", "snips", "dm", "dr"} and "pseudo_inverse" in data["lists"]
    trending = _surface(logged["tmp"], "cli_trending", 0.5, explore="trending")
    code, outp, err = run_cli(monkeypatch, capsys, "ope", "--policy", trending, "--logging", logged["logging"],
                              "--store", logged["store"], "--window-days", "1")
    assert code == 0 and "ips" in outp and "refused" in outp and "never takes" in " ".join(err.split())
    code, _, err = run_cli(monkeypatch, capsys, "ope", "--policy", logged["logging"], "--store",
                           str(logged["tmp"] / "nowhere"))
    assert code == 2 and "store" in err
    code, _, err = run_cli(monkeypatch, capsys, "ope", "--policy", logged["logging"], "--store", logged["store"],
                           "--logging", "communities")
    assert code == 2 and "exploration slot" in err


@pytest.mark.skipif(not os.environ.get("BELONG_OBP_PYTHON"), reason="BELONG_OBP_PYTHON (an obp interpreter) unset")
def test_store_feedback_matches_obp(logged):
    policy = _surface(logged["tmp"], "explore_more_obp", 0.6)
    out = bench_ope(store=logged["store"], policy=policy, logging=logged["logging"], window_days=1.0)
    assert out["max_abs_diff"] <= 1e-6 and {"ips", "snips", "dm", "dr"} <= set(out["abs_diff"])
