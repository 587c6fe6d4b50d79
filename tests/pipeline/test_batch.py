"""``Pipeline.candidates_batch`` / ``rank_batch`` (offline batches: sources and the scorer take a whole batch) give
exactly what one request at a time gives, on every shipped surface of a small simulated world."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.pipeline.types import Request
from belong.simulate import simulate_world
from belong.state import from_world


@pytest.fixture(scope="module")
def sim_state():
    return from_world(simulate_world(300, 30, seed=3))


@pytest.fixture(scope="module")
def fitted(sim_state):
    """Each shipped surface fitted once on the simulated world (the ranker kept small: what is checked is the
    batch, not its quality)."""
    out = {}
    for name in ("communities", "communities_ranked", "people", "content"):
        pipeline = surfaces.load(name)
        if name == "communities_ranked":
            pipeline.scorer.config.users = 100
            pipeline.scorer.config.rounds = 30
        out[name] = pipeline.fit(sim_state)
    return out


def _requests(state, surface: Surface, k: int) -> list[Request]:
    ids = state.users.ids[:: max(1, state.n_users // 60)]
    return [Request(u, surface, k=k, explain=False) for u in ids]


@pytest.mark.parametrize("name", ["communities", "communities_ranked", "people", "content"])
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
        non_empty += bool(answer)
    assert non_empty >= len(reqs) // 2  # the comparison is on real lists, not empty ones
    if pipeline.surface is Surface.COMMUNITIES:  # the sources with a vectorised batch did propose something
        for source in ("text_match", "trending"):
            assert sum(c.source_counts.get(source, 0) for c in batch) > 0
    assert pipeline.candidates_batch([]) == [] and pipeline.rank_batch([]) == []


def test_a_learned_scorer_predicts_the_batch_in_one_call(sim_state, fitted, monkeypatch):
    pipeline = fitted["communities_ranked"]
    ranker = pipeline.scorer.ranker
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
