"""MMR diversity, per-source quotas, dedupe and the exploration slot's propensities."""

from __future__ import annotations

import numpy as np
import pytest

from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.types import Candidate, Merged, Reason, Request
from belong.ranking.rerank import MMRConfig, MMRSelector, slot_distribution


def _cands(items, sources) -> list[Merged]:
    out = []
    for rank, (i, s) in enumerate(zip(items, sources, strict=True)):
        m = Merged(i)
        m.hits[s] = (rank, Candidate(i, s, 1.0, Reason("")))
        out.append(m)
    return out


def _selector(sim_state, **kw) -> MMRSelector:
    sel = MMRSelector(MMRConfig(**kw))
    sel.prepare(sim_state)
    return sel


def _intra_similarity(sel: MMRSelector, items: list[int]) -> float:
    v = sel.emb[Surface.COMMUNITIES][items]
    s = v @ v.T
    n = len(items)
    return float((s.sum() - np.trace(s)) / (n * (n - 1)))


def test_mmr_increases_diversity_and_keeps_relevance(sim_state):
    n = sim_state.n_communities
    rng = np.random.default_rng(0)
    items = rng.permutation(n)[:100].tolist()
    scores = np.sort(rng.random(100))[::-1]
    cands = _cands(items, ["a"] * 100)
    req = Request(sim_state.users.ids[0], Surface.COMMUNITIES, k=10)
    plain = [m.item for m, _ in _selector(sim_state, relevance=1.0).select(req, cands, scores)]
    sel = _selector(sim_state, relevance=0.7)
    diverse_pairs = sel.select(req, cands, scores)
    diverse = [m.item for m, _ in diverse_pairs]
    assert plain == items[:10]
    assert len(set(diverse)) == 10
    assert _intra_similarity(sel, diverse) < _intra_similarity(sel, plain)
    rel = dict(zip(items, scores, strict=True))
    assert sum(rel[i] for i in diverse) >= 0.8 * sum(rel[i] for i in plain)


def test_quotas_and_dedupe(sim_state):
    cands = _cands(list(range(30)) + [0, 1], ["a"] * 20 + ["b"] * 10 + ["a", "a"])
    scores = np.linspace(1, 0, 32)
    req = Request(sim_state.users.ids[0], Surface.COMMUNITIES, k=12)
    out = _selector(sim_state, relevance=1.0, quota={"a": 4}, default_quota=5).select(req, cands, scores)
    items = [m.item for m, _ in out]
    assert len(items) == len(set(items)) == 9  # 4 from a, 5 from b (default quota): all that is allowed
    mains = [next(iter(m.hits)) for m, _ in out]
    assert mains.count("a") == 4 and mains.count("b") == 5


def test_slot_distribution_sums_to_one_and_is_positive():
    for greedy, pool, eps in ((5, [1, 2, 3], 0.1), (None, [1, 2], 0.3), (2, [1, 2, 3], 0.5), (7, [], 0.2)):
        d = slot_distribution(greedy, pool, eps)
        assert sum(d.values()) == pytest.approx(1.0 if greedy is not None else eps)
        assert all(0 < p <= 1 for p in d.values())


def test_exploration_slot_records_propensity_and_explores_at_rate_epsilon(sim_state):
    eps = 0.25
    sel = _selector(sim_state, relevance=1.0, epsilon=eps, explore_slot=2, explore_source="new")
    explored = 0
    trials = 400
    for t in range(trials):
        cands = _cands(list(range(20)), ["a"] * 15 + ["new"] * 5)
        req = Request(sim_state.users.ids[t % sim_state.n_users], Surface.COMMUNITIES, k=5, seed=t)
        out = sel.select(req, cands, np.linspace(1, 0, 20))
        props = [m.features["propensity"] for m, _ in out]
        assert all(0 < p <= 1 for p in props)
        slot = out[1][0]
        if slot.features["explored"]:
            explored += 1
            assert slot.item >= 15 and slot.features["propensity"] == pytest.approx(eps / 5)
        else:
            assert slot.item == 1 and slot.features["propensity"] == pytest.approx(1 - eps)
        assert [m.features["propensity"] for i, (m, _) in enumerate(out) if i != 1] == [1.0] * 4
    assert abs(explored / trials - eps) < 0.07


def test_bad_settings_are_validation_errors():
    with pytest.raises(ValidationError):
        MMRSelector(MMRConfig(relevance=1.5))
    with pytest.raises(ValidationError):
        MMRSelector(MMRConfig(epsilon=1.0))
