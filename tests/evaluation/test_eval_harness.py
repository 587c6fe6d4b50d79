"""fit -> evaluate round trips with known answers, segments, sampled ranking, paired comparisons, JSON shape."""

from __future__ import annotations

import numpy as np
import pytest
from eval_helpers import CoOccurrence, Popularity, clusters

from belong.errors import ValidationError
from belong.evaluation import harness, modelspec
from belong.evaluation.modelspec import ModelChoice
from belong.evaluation.splitters import make_split
from belong.interactions import Interactions


def test_round_trip_known_answer_full_ranking() -> None:
    data = clusters()
    split = make_split("given", data)
    result = harness.evaluate_model(CoOccurrence(), split, [1, 3], name="cooc")
    # every user's missing cluster item is the only one co-occurring with their history: ranked first
    for m in ("recall@1", "ndcg@1", "hr@1", "precision@1", "mrr@1", "map@1", "recall@3", "ndcg@3"):
        assert result.metrics[m] == pytest.approx(1.0), m
    assert result.metrics["precision@3"] == pytest.approx(1 / 3)
    assert result.metrics["coverage@1"] == pytest.approx(6 / 6)
    assert result.users.tolist() == list(range(8))
    assert result.ci95["recall@1"] == [1.0, 1.0]
    assert result.fit_seconds >= 0 and result.score_seconds >= 0


def test_round_trip_known_answer_popularity() -> None:
    split = make_split("given", clusters())
    result = harness.evaluate_model(Popularity(), split, [1], name="pop")
    # training popularity: a0 = a1 = b0 = b1 = 3 users, a2 = b2 = 2; ties go to the lower index (a0 < ... < b2).
    # cluster A users: (a0,a1) -> b0 miss, (a0,a2) -> a1 hit, (a1,a2) -> a0 hit, (a0,a1) -> b0 miss;
    # cluster B users: every one gets a0 (or a1) -> miss. 2 hits out of 8 users, every pick has popularity 3.
    assert result.metrics["recall@1"] == pytest.approx(2 / 8)
    assert result.metrics["hr@1"] == pytest.approx(2 / 8)
    assert result.metrics["arp@1"] == pytest.approx(3.0)
    assert result.metrics["coverage@1"] == pytest.approx(3 / 6)  # a0, a1, b0


def test_sampled_protocol_ranks_candidates_with_pessimistic_ties() -> None:
    data = clusters()
    split = make_split("loo-sampled", data, n_negatives=3, min_item_ratings=0, min_user_ratings=0, seed=1)
    result = harness.evaluate_model(CoOccurrence(), split, [1, 2], name="cooc")
    assert result.metrics["hr@1"] == pytest.approx(1.0)
    # beyond-accuracy metrics are not computed on sampled candidate lists
    assert not {"ild@1", "arp@1", "novelty@1", "coverage@1"} & set(result.metrics)
    # a model that scores every item the same: the held-out item goes after all tied negatives
    result = harness.evaluate_model(_Constant(), split, [1, 3, 4], name="const")
    assert result.metrics["hr@3"] == 0.0 and result.metrics["hr@4"] == 1.0


class _Constant(Popularity):
    name = "constant"

    def _score(self, user_idx: np.ndarray, X_users) -> np.ndarray:
        return np.ones((len(user_idx), self.X.shape[1]), np.float32)


def test_cold_users_are_scored_and_segmented() -> None:
    data = clusters()
    # a new user who only appears after the cut, on a known item
    users = np.r_[data.user_ids[data.users], ["newbie"]]
    items = np.r_[data.item_ids[data.items], ["a0"]]
    data = Interactions.from_ids(users, items, ts_us=np.r_[data.ts_us, [100]])
    split = make_split("temporal", data, cut=100e-6)
    assert split.stats["cold_test_users"] == 1
    result = harness.evaluate_model(Popularity(), split, [1, 2], name="pop")
    assert result.segments["cold"]["users"] == 1 and result.segments["warm"]["users"] == 8
    # the cold user is recommended the most popular items (a0 and a1 tie at 3 users): a0 is first
    assert result.segments["cold"]["hr@1"] == 1.0
    # every warm user has exactly 2 training rows: all "light" (<= median), no "heavy" segment
    assert set(result.segments) == {"cold", "warm", "light"}


def test_age_segments_when_known() -> None:
    data = clusters()
    data.meta["user_age_group"] = np.where(np.char.startswith(data.user_ids.astype(str), "a"), "teen", "adult")
    result = harness.evaluate_model(CoOccurrence(), make_split("given", data), [1], name="cooc")
    assert result.segments["teen"]["users"] == 4 and result.segments["adult"]["users"] == 4


def test_run_several_models_json_shape_and_paired() -> None:
    data = clusters()
    split = make_split("given", data)
    modelspec.FACTORIES.add("test-cooc", lambda rest, params: CoOccurrence())
    modelspec.FACTORIES.add("test-const", lambda rest, params: _Constant())
    run = harness.run(data, split, [ModelChoice("test-cooc:x", {}), ModelChoice("test-const:y", {})], [1, 3])
    out = run.to_dict()
    assert out["dataset"] == "clusters" and out["protocol"]["name"] == "given"
    assert out["ks"] == [1, 3] and out["primary_k"] == 3
    assert [r["model"] for r in out["results"]] == ["test-cooc:x", "test-const:y"]
    pair = out["paired"]["test-cooc:x vs test-const:y"]
    assert pair["metric"] == "ndcg@3" and pair["mean_diff"] > 0 and pair["n_users"] == 8
    for r in out["results"]:
        assert {"model", "params", "metrics", "ci95", "segments", "fit_seconds", "score_seconds"} <= set(r)
        assert all(len(v) == 2 for v in r["ci95"].values())
    single = harness.run(data, split, [ModelChoice("test-cooc:x", {})], [1]).to_dict()
    assert single["model"] == "test-cooc:x" and "results" not in single and single["metrics"]["recall@1"] == 1.0


def test_registry_models_and_bad_names() -> None:
    data = clusters()
    split = make_split("given", data)
    run = harness.run(data, split, [ModelChoice("most-popular", {}), ModelChoice("ease", {"l2": 1.0})], [1])
    assert [r.model for r in run.results] == ["most-popular", "ease"]
    assert run.results[1].params["l2"] == 1.0
    with pytest.raises(ValidationError, match="unknown model kind"):
        modelspec.build_model("nosuchprefix:x", {})
    with pytest.raises(ValidationError):
        modelspec.build_model("nosuchmodel", {})
    with pytest.raises(ValidationError, match="at least one"):
        harness.run(data, split, [], [1])


def test_evaluable_protocol_is_met_by_recommenders() -> None:
    assert isinstance(CoOccurrence(), harness.Evaluable)


def test_primary_k() -> None:
    assert harness.primary_k([10, 20, 50]) == 20
    assert harness.primary_k([5, 10]) == 10
    assert harness.primary_k([15, 25]) == 15


def test_tuned_keys_and_param_sources() -> None:
    assert modelspec.tuned_keys("ml-1m-lcfn-split", "given") == ["ml-1m-lcfn-split", "ml-1m-lcfn"]
    assert modelspec.tuned_keys("ml-100k", "loo-sampled") == ["ml-100k-loo", "ml-100k"]
    assert modelspec.tuned_keys("edges:lastfm_asia_edges", "hide-edges") == ["edges-lastfm_asia_edges"]
    choices = modelspec.model_params(["ease", "test-cooc:x"], {"ease": {"l2": 5}}, ["no-such-dataset"])
    assert choices[0].params["l2"] == 5 and choices[0].params_source == "defaults"
    assert choices[1] == ModelChoice("test-cooc:x", {}, "given")
    with pytest.raises(ValidationError, match="not among"):
        modelspec.model_params(["ease"], {"itemknn": {"k": 3}}, [])
