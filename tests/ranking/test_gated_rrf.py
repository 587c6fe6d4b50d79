"""``gated_rrf``: the people rank blend whose gated sources count only where a validation cut of the training
friend graph shows they help."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.scorers import WeightedRRF
from belong.pipeline.types import Request
from belong.ranking.gated_rrf import GatedRRF
from belong.surfaces import from_dict


def _surface(sources: list[tuple[str, float]], gated: list[str], extra: str = "") -> str:
    s = 'surface = "people"\n'
    for t, w in sources:
        s += f'[[sources]]\ntype = "{t}"\nweight = {w}\nk = 100\n'
    s += '[[filters]]\ntype = "safety_rules"\nrules = ["self", "already_connected", "blocked", "inactive"]\n'
    names = ", ".join(f'"{g}"' for g in gated)
    return s + f'[scorer]\ntype = "gated_rrf"\nc = 10.0\nusers = 300\ngated = [{names}]\n{extra}'


# similar_people alone (no gated source) finds few future friends; friends of friends finds many (it helps);
# popular_people at weight 10 buries them under the most-connected people (it hurts)
HELPS_AND_HURTS = _surface([("similar_people", 0.3), ("friends_of_friends", 1.0), ("popular_people", 10.0)],
                           ["friends_of_friends", "popular_people"])


@pytest.fixture(scope="module")
def gated(sim_state):
    return from_dict(tomllib.loads(HELPS_AND_HURTS), "people").fit(sim_state)


def test_the_gate_keeps_a_source_that_helps_and_drops_one_that_hurts(gated):
    scorer = gated.scorer
    assert isinstance(scorer, GatedRRF)
    f = scorer.fitted()
    assert f["holdout_by"] == "time" and f["lists"] >= 100  # the simulated world's friendships have times
    fof, pop = f["gate"]["friends_of_friends"], f["gate"]["popular_people"]
    assert fof["kept"] == 1.0 and fof["gain"] > 0.05 and fof["p"] < 0.01
    assert fof["ndcg_with"] == pytest.approx(fof["ndcg_without"] + fof["gain"], abs=2e-5)
    assert pop["kept"] == 0.0 and pop["gain"] < 0
    assert pop["ndcg_without"] == pytest.approx(fof["ndcg_with"])  # tried on top of the kept source
    assert f["kept"] == ["friends_of_friends"]
    assert scorer.weight("friends_of_friends") == 1.0 and scorer.weight("popular_people") == 0.0
    assert scorer.weight("similar_people") == 0.3  # not gated: its own weight


def test_a_dropped_source_scores_nothing_and_ranks_after_the_rest(gated, sim_state):
    scorer = gated.scorer
    u = next(u for u in sim_state.users.ids
             if len(gated.candidates(Request(u, Surface.PEOPLE), score=False).ranked) > 30)
    cands = [m for m, _ in gated.candidates(Request(u, Surface.PEOPLE, k=50), score=False).ranked]  # every source
    scores = scorer.score(Request(u, Surface.PEOPLE), sim_state, cands)
    only_pop = [s for m, s in zip(cands, scores, strict=True) if set(m.hits) == {"popular_people"}]
    others = [s for m, s in zip(cands, scores, strict=True) if set(m.hits) != {"popular_people"}]
    assert only_pop and all(s == 0.0 for s in only_pop) and min(others) > 0.0
    plain = WeightedRRF(WeightedRRF.Config(c=10.0, weights={"popular_people": 0.0}))
    plain.source_weights = dict(scorer.source_weights)
    np.testing.assert_array_equal(scores, plain.score(Request(u, Surface.PEOPLE), sim_state, cands))


def test_a_dropped_source_is_not_run_and_the_answers_are_the_blend_without_it(gated, sim_state):
    """What the gate dropped costs nothing per request: a scored run (one request, a batch of candidate objects,
    the array path) does not run it, and answers exactly as the blend of the other sources."""
    assert gated.scorer.inactive_sources() == frozenset({"popular_people"})
    without = _surface([("similar_people", 0.3), ("friends_of_friends", 1.0)], []).replace("gated_rrf",
                                                                                           "weighted_rrf")
    blend = from_dict(tomllib.loads(without.replace("users = 300\ngated = []\n", "")), "people").fit(sim_state)
    reqs = [Request(u, Surface.PEOPLE, k=10, explain=False) for u in sim_state.users.ids[::20]]
    got = [gated.run(r) for r in reqs]
    assert [[(i.id, i.score) for i in a.items] for a in got] == [[(i.id, i.score) for i in blend.run(r).items]
                                                                 for r in reqs]
    assert sum(bool(a.items) for a in got) > 10
    assert all(a.trace.source_counts["popular_people"] == 0 for a in got)
    assert all(a.trace.source_ms["popular_people"] == 0.0 for a in got)
    assert gated.rank_batch(reqs) == blend.rank_batch(reqs)
    assert [[(m.item, s) for m, s in c.ranked] for c in gated.candidates_batch(reqs)] == \
        [[(m.item, s) for m, s in c.ranked] for c in blend.candidates_batch(reqs)]
    # the unscored candidate stage (what the gate and the rankers learn from) still runs every source
    assert any("popular_people" in m.hits for r in reqs for m, _ in gated.candidates(r, score=False).ranked)


def test_the_decision_travels_in_the_config_and_an_artifact_without_refitting(gated, sim_state, tmp_path):
    from belong.training.artifact import load_pipeline, write_manifest, write_surface

    assert gated.to_dict()["scorer"]["gate"] == gated.scorer.config.gate  # what a `belong train` manifest shows
    entry = write_surface(tmp_path, gated)
    write_manifest(tmp_path, {"version": "test", "surfaces": {"people": entry}})
    loaded = load_pipeline(tmp_path, "people", sim_state)
    assert isinstance(loaded.scorer, GatedRRF)
    assert loaded.scorer.gating == {}  # not fitted again: no validation lists were built
    assert loaded.scorer.fitted()["gate"] == gated.scorer.fitted()["gate"]
    assert loaded.scorer.fitted()["kept"] == ["friends_of_friends"]
    reqs = [Request(u, Surface.PEOPLE, k=10, explain=False) for u in sim_state.users.ids[::25]]
    got = [[(i.id, i.score) for i in loaded.run(r).items] for r in reqs]
    assert got == [[(i.id, i.score) for i in gated.run(r).items] for r in reqs] and sum(map(bool, got)) > 10
    assert loaded.rank_batch(reqs) == gated.rank_batch(reqs)  # the batch path: the same weights


def test_an_unfitted_gate_counts_no_gated_source(sim_state):
    p = from_dict(tomllib.loads(HELPS_AND_HURTS), "people")
    assert p.scorer.weight("friends_of_friends") == 0.0 and p.scorer.weight("similar_people") == 0.3
    assert p.scorer.fitted() == {"kept": [], "gate": {}}


def test_too_few_lists_keep_the_gated_sources_off(sim_state):
    from belong.state import as_of

    T = int(np.sort(np.asarray(sim_state.users.created))[3])  # almost nobody: no friendships yet
    tiny = as_of(sim_state, T)
    p = from_dict(tomllib.loads(HELPS_AND_HURTS), "people").fit(tiny)
    f = p.scorer.fitted()
    assert "skipped" in f and f["kept"] == [] and p.scorer.weight("friends_of_friends") == 0.0


def test_the_shipped_people_surface_gates_friend_embedding():
    p = surfaces.load("people")
    assert isinstance(p.scorer, GatedRRF) and p.scorer.config.gated == ["friend_embedding"]
    assert p.scorer.source_weights["friend_embedding"] == 2.0 and p.scorer.config.c == 10.0
    assert p.scorer.config.users <= 3000  # every `belong serve` without --models pays this fit at start


def test_bad_settings_name_the_field():
    for key, value in (("holdout_by", "'sometimes'"), ("holdout", "1.5"), ("users", "3"), ("max_p", "0.0"),
                       ("look", "-1")):
        with pytest.raises(ValidationError) as e:
            from_dict(tomllib.loads(HELPS_AND_HURTS.replace("users = 300", f"{key} = {value}")))
        assert key in str(e.value)


def test_a_gated_source_the_pipeline_lacks_is_reported_absent(sim_state):
    """``pipeline:people/friends_of_friends`` evaluates one source alone: the gate has nothing to decide."""
    p = from_dict(tomllib.loads(HELPS_AND_HURTS.replace('gated = ["friends_of_friends", "popular_people"]',
                                                        'gated = ["pixie"]'))).fit(sim_state)
    f = p.scorer.fitted()
    assert f == {"absent": ["pixie"], "kept": [], "gate": {}}
    assert p.scorer.weight("friends_of_friends") == 1.0  # not gated: its own weight


def test_the_interim_look_stops_early_only_to_drop_a_source_that_already_hurts(sim_state):
    hurts = _surface([("friends_of_friends", 1.0), ("popular_people", 10.0)], ["popular_people"], "look = 100\n")
    p = from_dict(tomllib.loads(hurts), "people").fit(sim_state)
    f = p.scorer.fitted()
    assert "stopped_early" in f and 100 <= f["lists"] < 300 and f["kept"] == []
    assert f["gate"]["popular_people"]["gain"] < 0 and f["gate"]["popular_people"]["p"] < 0.01
    full = from_dict(tomllib.loads(hurts.replace("look = 100", "look = 0")), "people").fit(sim_state).scorer.fitted()
    assert "stopped_early" not in full and full["lists"] > f["lists"] and full["kept"] == []
    helps = _surface([("popular_people", 1.0), ("friends_of_friends", 1.0)], ["friends_of_friends"], "look = 100\n")
    g = from_dict(tomllib.loads(helps), "people").fit(sim_state).scorer.fitted()
    assert "stopped_early" not in g and g["lists"] == full["lists"] and g["kept"] == ["friends_of_friends"]


def test_above_max_people_the_gate_builds_no_lists_and_the_source_is_off(sim_state):
    """On graphs too large for it (1M people: minutes of validation lists and iALS fits, ~20 ms a request) the
    gated source is neither fitted nor run, and the answers are the blend without it."""
    small = sim_state.n_users - 1
    text = _surface([("similar_people", 0.3), ("friends_of_friends", 1.0), ("friend_embedding", 2.0)],
                    ["friend_embedding"], f"max_people = {small}\n")
    text = text.replace('type = "friend_embedding"\n', f'type = "friend_embedding"\nmax_people = {small}\n')
    p = from_dict(tomllib.loads(text), "people").fit(sim_state)
    f = p.scorer.fitted()
    assert "max_people" in f["skipped"] and f["kept"] == [] and "lists" not in f
    assert p.scorer.inactive_sources() == frozenset({"friend_embedding"})
    emb = next(s for s in p.sources if s.name == "friend_embedding")
    assert emb.fitted() == {}  # not fitted
    reqs = [Request(u, Surface.PEOPLE, k=10, explain=False) for u in sim_state.users.ids[::40]]
    assert all(emb.generate(r, sim_state) == [] for r in reqs)
    with pytest.raises(ValidationError, match="max_people"):
        from_dict(tomllib.loads(text.replace(f"max_people = {small}\n[[filters]]", "max_people = -1\n[[filters]]")
                                .replace(f"max_people = {small}\n", "max_people = -1\n")), "people")
