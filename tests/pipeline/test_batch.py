"""``Pipeline.candidates_batch`` / ``rank_batch`` (offline batches: sources and the scorer take a whole batch) give
exactly what one request at a time gives, on every shipped surface of a small simulated world."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.pipeline.types import Proposals, Request
from belong.simulate import simulate_world
from belong.state import from_world

SURFACES = tuple(surfaces.names())


@pytest.fixture(scope="module")
def sim_state():
    return from_world(simulate_world(300, 30, seed=3))


@pytest.fixture(scope="module")
def fitted(sim_state):
    """Each shipped surface fitted once on the simulated world (the ranker kept small: what is checked is the
    batch, not its quality)."""
    out = {}
    for name in SURFACES:
        pipeline = surfaces.load(name)
        if name in ("communities_ranked", "people_ranked", "people_two_sided", "content", "content_ranked"):
            pipeline.scorer.config.users = 100
            pipeline.scorer.config.rounds = 30
        out[name] = pipeline.fit(sim_state)
    return out


def _requests(state, surface: Surface, k: int) -> list[Request]:
    ids = state.users.ids[:: max(1, state.n_users // 60)]
    return [Request(u, surface, k=k, explain=False) for u in ids]


@pytest.mark.parametrize("name", SURFACES)
def test_batch_equals_one_request_at_a_time(sim_state, fitted, name):
    pipeline = fitted[name]
    reqs = _requests(sim_state, pipeline.surface, 10)
    batch = pipeline.candidates_batch(reqs)
    answers = pipeline.rank_batch(reqs)
    assert len(batch) == len(answers) == len(reqs)
    non_empty = 0
    for req, got, answer in zip(reqs, batch, answers, strict=True):
        want = pipeline.candidates(req)
        assert [(m.item, s) for m, s in got.ranked] == [(m.item, s) for m, s in want.ranked]  # same order, scores
        assert [(r.item, r.filter, r.reason) for r in got.removed] == [
            (r.item, r.filter, r.reason) for r in want.removed]
        assert got.source_counts == want.source_counts and got.n_candidates == want.n_candidates
        run = pipeline.run(req)
        assert answer == [(it.index, it.score) for it in run.items]
        assert all(type(i) is int and type(s) is float for i, s in answer)
        non_empty += bool(answer)
    assert non_empty >= len(reqs) // 2  # the comparison is on real lists, not empty ones
    if pipeline.surface is Surface.COMMUNITIES:  # the sources with a vectorised batch did propose something
        for source in ("text_match", "trending"):
            assert sum(c.source_counts.get(source, 0) for c in batch) > 0
    assert pipeline.candidates_batch([]) == [] and pipeline.rank_batch([]) == []
    assert pipeline.rank_batch(reqs, arrays=False) == answers  # the object path: the same lists


@pytest.mark.parametrize("name", SURFACES)
def test_every_source_proposes_as_arrays_what_it_generates(sim_state, fitted, name):
    """``propose_batch`` (arrays, what batched evaluation reads) gives each source's own candidates: the same
    items in the same order, the same scores, the same ``aux`` the ranker reads from a candidate's reason."""
    pipeline = fitted[name]
    reqs = _requests(sim_state, pipeline.surface, 10)
    for src in pipeline.sources:
        got = src.propose_batch(reqs, sim_state)
        assert len(got) == len(reqs)
        proposed = 0
        for req, props in zip(reqs, got, strict=True):
            want = Proposals.of(src.generate(req, sim_state), src.config.k)
            assert props.items.tolist() == want.items.tolist(), (name, src.name)
            assert props.scores.tolist() == want.scores.tolist(), (name, src.name)
            assert props.items.dtype == np.int64 and props.scores.dtype == np.float64
            assert _aux(props) == _aux(want), (name, src.name)
            proposed += props.items.size
        if src.name not in ("friends_joined", "friends_engaged", "new_communities", "similar_people"):
            assert proposed > 0, (name, src.name)  # compared on real proposals


def _aux(p: Proposals) -> list | None:
    """A source's ``aux`` values (None where absent; None for none at all)."""
    if p.aux is None or np.isnan(p.aux).all():
        return None
    return [None if np.isnan(a) else a for a in p.aux.tolist()]


@pytest.mark.parametrize("friend_weight", [1.0, 2.5])
@pytest.mark.parametrize("surface", [Surface.COMMUNITIES, Surface.PEOPLE])
def test_pixie_walks_a_batch_as_each_user_alone(sim_state, friend_weight, surface):
    """A batch of walks draws each user's uniforms from that user's own generator in the order one walk alone
    draws them (weighted neighbours: binary search; a number of steps that is not a multiple of the check)."""
    from belong.sources.random_walk import Pixie, PixieConfig

    px = Pixie(PixieConfig(friend_weight=friend_weight, walkers=200, max_steps=5_300, k=50))
    px.prepare(sim_state)
    reqs = [Request(u, surface, k=10, explain=False, seed=s)
            for s, u in enumerate(sim_state.users.ids[::7])]
    got = px.propose_batch(reqs, sim_state)
    for req, props in zip(reqs, got, strict=True):
        want = px.generate(req, sim_state)
        assert props.items.tolist() == [c.item for c in want]
        assert props.scores.tolist() == [c.score for c in want]
    assert sum(p.items.size for p in got) > 0
    explained = [Request(r.user_id, r.surface, k=10, explain=e, seed=r.seed) for e in (True, False) for r in reqs]
    for req, cands in zip(explained, px.generate_batch(explained, sim_state), strict=True):  # objects, reasons
        assert cands == px.generate(req, sim_state)


@pytest.mark.parametrize("segment", [None, 20_000])  # the default (one segment here) or about 8 steps
@pytest.mark.parametrize("surface", [Surface.COMMUNITIES, Surface.PEOPLE])
def test_pixie_batch_stops_early_where_each_walk_alone_stops(sim_state, surface, segment, monkeypatch):
    """The batch counts visits per segment of steps; where the early stop holds at a segment's end it finds the
    check (every four steps) at which the walk alone stopped: the same steps, visits and scores."""
    from belong.sources import random_walk
    from belong.sources.random_walk import Pixie, PixieConfig

    if segment is not None:
        monkeypatch.setattr(random_walk, "_SEGMENT", segment)
    px = Pixie(PixieConfig(walkers=40, max_steps=40_000, n_p=3, n_v=12, k=50))
    px.prepare(sim_state)
    reqs = [Request(u, surface, k=10, explain=True, seed=s) for s, u in enumerate(sim_state.users.ids[::5])]
    steps = []
    for req, cands in zip(reqs, px.generate_batch(reqs, sim_state), strict=True):
        want = px.generate(req, sim_state)
        assert cands == want  # items, scores, reasons with visits and steps
        steps += [c.reason.data["steps"] for c in want[:1]]
    assert steps and min(steps) < 40_000 and len(set(steps)) > 2  # stopped, at different checks


def test_the_server_batch_with_explanations_equals_one_request_at_a_time(sim_state, fitted):
    """``candidates_batch`` of requests that ask for explanations (the server's batched cold path): the same lists,
    the same reasons and the ranker's ``p_join`` per candidate, as one request each."""
    pipeline = fitted["communities_ranked"]
    reqs = [Request(r.user_id, r.surface, k=10, seed=5) for r in _requests(sim_state, Surface.COMMUNITIES, 10)]
    for req, got in zip(reqs, pipeline.candidates_batch(reqs, depth=50), strict=True):
        want = pipeline.candidates(req, depth=50)
        assert [(m.item, s, m.features, m.hits) for m, s in got.ranked] == [
            (m.item, s, m.features, m.hits) for m, s in want.ranked]
        assert all("p_join" in m.features for m, _ in got.ranked)


def test_a_learned_scorer_predicts_the_batch_in_one_call(sim_state, fitted, monkeypatch):
    pipeline = fitted["communities_ranked"]
    ranker = pipeline.scorer.ranker
    monkeypatch.setattr(pipeline.scorer.config, "guard", False)  # the ranker orders the lists, not the blend
    calls: list[int] = []
    real = type(ranker).score

    def counted(self, X):
        calls.append(X.shape[0])
        return real(self, X)

    monkeypatch.setattr(type(ranker), "score", counted)
    reqs = _requests(sim_state, Surface.COMMUNITIES, 10)
    lists = pipeline.candidates_batch(reqs)
    assert len(calls) == 1 and calls[0] == sum(c.n_candidates - len(c.removed) for c in lists)
    assert np.all([len(c.ranked) > 0 for c in lists[:5]])


def test_a_bad_request_in_a_batch_is_refused_before_any_work(sim_state, fitted):
    from belong.errors import UnknownIdError

    pipeline = fitted["communities"]
    reqs = _requests(sim_state, Surface.COMMUNITIES, 10)[:3] + [Request("no-such-user", Surface.COMMUNITIES, k=5)]
    with pytest.raises(UnknownIdError):
        pipeline.rank_batch(reqs)


def _chosen(rows) -> list[tuple[int, float, dict]]:
    return [(m.item, s, dict(m.features)) for m, s in rows]


@pytest.mark.parametrize("name", [*SURFACES, "loop-explore"])
def test_select_batch_on_arrays_equals_the_object_path(sim_state, fitted, name):
    """``select_batch`` (what the closed loop serves) on arrays gives the object path's chosen candidates: the same
    items, scores and features (the hydrators' and a selector's own, e.g. an exploration slot's propensity)."""
    if name == "loop-explore":  # the loop's epsilon-greedy surface: a selector without an array form
        from pathlib import Path

        import belong.loop

        path = Path(belong.loop.__file__).parent / "scenarios" / "surfaces" / "communities_explore.toml"
        pipeline = surfaces.load(str(path)).fit(sim_state)
    else:
        pipeline = fitted[name]
    reqs = [Request(r.user_id, r.surface, k=r.k, explain=False, seed=7) for r in
            _requests(sim_state, pipeline.surface, 10)]
    got = pipeline.select_batch(reqs)
    want = pipeline.select_batch(reqs, arrays=False)
    assert [_chosen(g) for g in got] == [_chosen(w) for w in want]
    assert sum(len(g) for g in got) > 0
    for g, w in zip(got, want, strict=True):  # every source that found a chosen item, at the same rank and score
        for (a, _), (b, _) in zip(g, w, strict=True):
            assert {s: (r, c.score) for s, (r, c) in a.hits.items()} == {
                s: (r, c.score) for s, (r, c) in b.hits.items()}
    if name == "loop-explore":
        assert any(m.features.get("explored") for g in got for m, _ in g)  # the slot did explore somewhere
    assert pipeline.select_batch([]) == []


def test_ranker_features_on_arrays_equal_the_object_rows(sim_state, fitted):
    """The learned ranker's feature rows from merged arrays (``feature_matrix_arrays``, batched scoring) equal those
    of the same candidates as objects, value for value (NaN where missing)."""
    from belong.pipeline.pipeline import _as_merged
    from belong.ranking.dataset import feature_matrix, feature_matrix_arrays

    pipeline = fitted["communities_ranked"]
    names = pipeline.scorer.ranker.source_names
    reqs = _requests(sim_state, Surface.COMMUNITIES, 10)
    lists, _ = pipeline._score_arrays(reqs)
    rows = 0
    for req, m in zip(reqs, lists, strict=True):
        got = feature_matrix_arrays(names, req, sim_state, m)
        np.testing.assert_array_equal(got, feature_matrix(names, req, sim_state, _as_merged(m)))
        rows += got.shape[0]
    assert rows > 0
    for req in reqs[:10]:  # and the candidate objects of the one-request path
        objs = [mm for mm, _ in pipeline.candidates(req, score=False).ranked]
        want = feature_matrix(names, req, sim_state, objs)
        m = next(x for r, x in zip(reqs, lists, strict=True) if r is req)
        order = np.argsort(m.items)
        np.testing.assert_array_equal(feature_matrix_arrays(names, req, sim_state, m)[order],
                                      want[np.argsort([mm.item for mm in objs])])
