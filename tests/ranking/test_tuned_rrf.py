"""``tuned_rrf``: the rank blend with its source weights tuned on a validation cut of the training state."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

from belong import surfaces
from belong.errors import ValidationError
from belong.pipeline.types import Request
from belong.ranking.dataset import TrainingLists
from belong.ranking.tuned_rrf import TunedRRF, _rrf_metrics, tune_weights
from belong.surfaces import from_dict

SURFACE = """
surface = "communities"
[[sources]]
type = "co_membership"
model = "itemknn"
k = 100
[[sources]]
type = "trending"
weight = 0.2
k = 50
[[sources]]
type = "new_communities"
weight = 0.1
k = 20
[[filters]]
type = "safety_rules"
[scorer]
type = "tuned_rrf"
users = 300
[selector]
type = "top_k"
"""


def _lists(ranks: np.ndarray, y: np.ndarray, groups: list[int], n_pos: list[int]) -> TrainingLists:
    names = ["a", "b"]
    fn = ["a_score", "a_rank", "b_score", "b_rank"]
    X = np.full((ranks.shape[0], 4), np.nan, np.float32)
    X[:, 1], X[:, 3] = ranks[:, 0], ranks[:, 1]
    return TrainingLists(X, y.astype(np.float32), np.array(groups), fn, names, np.arange(len(groups)),
                         np.array(n_pos), {"holdout_by": "random"})


def test_blend_metrics_by_hand():
    # one list of three: a ranks them 0, 1, 2; b found only the last (rank 0); the positive is the last
    ranks = np.array([[0, np.nan], [1, np.nan], [2, 0]], np.float64)
    y = np.array([0, 0, 1.0])
    off = np.array([0, 3])
    rec, ndcg = _rrf_metrics(ranks, np.array([1.0, 0.0]), 60.0, y, off, np.array([1]))
    assert rec == 1.0 and ndcg == pytest.approx(1 / np.log2(4))  # third place
    rec, ndcg = _rrf_metrics(ranks, np.array([1.0, 1.0]), 60.0, y, off, np.array([1]))
    assert ndcg == pytest.approx(1.0)  # b's vote lifts it to the top


def test_tuning_moves_weight_to_the_source_that_finds_the_positives():
    rng = np.random.default_rng(0)
    rows, ys, groups = [], [], []
    for _ in range(40):  # a orders at random, b puts the one positive first
        n = 30
        pos = int(rng.integers(n))
        a = rng.permutation(n).astype(np.float64)
        b = np.full(n, np.nan)
        b[pos] = 0.0
        rows.append(np.c_[a, b])
        ys.append((np.arange(n) == pos).astype(float))
        groups.append(n)
    lists = _lists(np.vstack(rows), np.concatenate(ys), groups, [1] * 40)
    weights, figures = tune_weights(lists, {"a": 1.0, "b": 0.1}, 60.0, [0.0, 1.0, 4.0], 2, 0.0005)
    assert weights["b"] / max(weights["a"], 1e-9) > 1.0
    assert figures["after"]["ndcg@20"] > figures["before"]["ndcg@20"]


def test_fit_tunes_on_a_cut_and_the_weights_round_trip(sim_state, tmp_path):
    path = tmp_path / "tuned.toml"
    path.write_text(SURFACE, encoding="utf-8")
    p = surfaces.load(str(path)).fit(sim_state)
    scorer = p.scorer
    assert isinstance(scorer, TunedRRF)
    t = scorer.tuning
    assert t["lists"] >= 10 and set(t["weights"]) == {s.name for s in p.sources}
    assert t["after"]["ndcg@20"] >= t["before"]["ndcg@20"]
    # the tuned weights travel in the pipeline's dict: a copy built from it (as an artifact loads) scores alike
    copy = from_dict(p.to_dict(), "communities")
    assert copy.scorer.config.tuned == scorer.config.tuned
    assert {s: copy.scorer.weight(s) for s in t["weights"]} == pytest.approx(t["weights"])
    # the tuned values are multipliers of each source's own weight: an experiment arm that sets a source's weight
    # (belong.experiments.arms sets the scorer's source_weights from the arm's sources) still moves it
    name = next(s for s, m in scorer.config.tuned.items() if m > 0)
    before = scorer.weight(name)
    scorer.source_weights = {**scorer.source_weights, name: scorer.source_weights[name] * 3.0}
    assert scorer.weight(name) == pytest.approx(3.0 * before)
    scorer.source_weights = {**scorer.source_weights, name: scorer.source_weights[name] / 3.0}
    u = str(sim_state.users.ids[int(np.argmax(np.diff(sim_state.membership_csr().indptr)))])
    req = Request(u, p.surface, k=10)
    copy.fit(sim_state, candidates_only=True)  # what an artifact's loader does: no scorer fit, no tuning
    copy.scorer.prepare(sim_state)
    copy.selector.prepare(sim_state)
    assert copy.scorer.tuning == {}
    assert [i.id for i in copy.run(req).items] == [i.id for i in p.run(req).items]


def test_bad_settings_name_the_field():
    for key, value in (("holdout_by", "'sometimes'"), ("holdout", "1.5"), ("users", "3"), ("passes", "0"),
                       ("multipliers", "[-1.0]")):
        with pytest.raises(ValidationError) as e:
            from_dict(tomllib.loads(SURFACE.replace("users = 300", f"{key} = {value}")))
        assert key in str(e.value)
