"""Training lists, the LightGBM ranker and calibration on a small simulated world."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.errors import ValidationError
from belong.ranking.calibration import Calibrator, expected_calibration_error
from belong.ranking.dataset import build_lists, feature_names, holdout
from belong.ranking.ranker import Ranker, list_metrics


@pytest.fixture(scope="module")
def lists(sim_state, surface_toml):
    p = surfaces.load(str(surface_toml))
    return build_lists(sim_state, p.fresh, fraction=0.2, max_users=500, seed=0)


def test_holdout_keeps_one_membership_and_hides_the_rest():
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 1, 1, 0, 0]], np.float32))
    Xt, held = holdout(X, 0.4, seed=0)
    assert 1 not in held  # one membership: nothing to hold out
    for u, items in held.items():
        kept = set(Xt[u].indices.tolist())
        assert kept and not kept & items and kept | items == set(X[u].indices.tolist())


def test_cold_share_hides_every_membership_of_some_users():
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    X = sp.csr_matrix((rng.random((200, 30)) < 0.3).astype(np.float32))
    Xt, held = holdout(X, 0.2, seed=0, cold=0.5)
    counts_t = np.diff(Xt.indptr)
    cold = [u for u in held if counts_t[u] == 0]
    assert 0.3 * len(held) < len(cold) < 0.7 * len(held)
    for u in cold:
        assert held[u] == set(X[u].indices.tolist())


def test_lists_are_grouped_labelled_and_never_contain_training_memberships(lists, sim_state):
    assert lists.X.shape == (lists.y.size, len(feature_names(lists.source_names)))
    assert lists.groups.sum() == lists.y.size and lists.groups.size == lists.users.size
    assert 0 < lists.y.mean() < 0.5
    assert 0.0 < lists.stats["candidate_recall"] <= 1.0


def test_ranker_beats_a_single_source_on_held_out_lists(lists):
    r = Ranker(rounds=80, min_data_in_leaf=20, seed=0).fit(lists)
    m = r.metrics
    best = max(v["ndcg@20"] for v in m["sources"].values())
    worst = min(v["ndcg@20"] for v in m["sources"].values())
    assert m["ranker"]["ndcg@20"] > worst
    assert m["ranker"]["ndcg@20"] >= 0.9 * best
    assert set(m["feature_importance"]) == set(lists.feature_names)
    p = r.probability(lists.X[:50])
    assert np.all((p >= 0) & (p <= 1))


def test_ranker_rejects_unknown_objectives_and_empty_data(lists):
    with pytest.raises(ValidationError):
        Ranker(objectives={"clicks": 1.0})
    empty = type(lists)(lists.X[:0], lists.y[:0], lists.groups[:0], lists.feature_names, lists.source_names,
                        lists.users[:0], lists.positives_held[:0])
    with pytest.raises(ValidationError):
        Ranker().fit(empty)


def test_list_metrics_by_hand():
    scores = np.array([3.0, 2.0, 1.0, 5.0, 4.0])
    y = np.array([0, 1, 0, 1, 0], np.float32)
    m = list_metrics(scores, y, np.array([3, 2]), np.array([2, 1]), k=2)
    # list 1: order 0,1 -> one of two positives in top 2; list 2: positive first
    assert m["recall@2"] == pytest.approx((0.5 + 1.0) / 2)
    ndcg1 = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert m["ndcg@2"] == pytest.approx((ndcg1 + 1.0) / 2)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_reduces_expected_calibration_error(method):
    rng = np.random.default_rng(0)
    true_p = rng.beta(1, 8, 40_000)
    y = (rng.random(true_p.size) < true_p).astype(np.float64)
    raw = np.sqrt(true_p)  # over-confident scores
    fit, test = slice(0, 20_000), slice(20_000, None)
    cal = Calibrator(method).fit(raw[fit], y[fit])
    before = expected_calibration_error(raw[test], y[test])
    after = expected_calibration_error(cal.predict(raw[test]), y[test])
    assert after < 0.5 * before


def test_unknown_calibration_method_is_a_validation_error():
    with pytest.raises(ValidationError):
        Calibrator("magic")


def test_shipped_ranked_surface_loads_with_its_tuned_settings():
    p = surfaces.load("communities_ranked")
    co = next(s for s in p.sources if s.name == "co_membership")
    blend = surfaces.load("communities")
    # the shipped blend's sources, weight for weight: the guard's fallback is that blend
    assert [(s.name, s.config.weight) for s in p.sources] == [(s.name, s.config.weight) for s in blend.sources]
    assert (co.config.model, co.config.ease_weight, co.config.ease_l2) == ("bspm", 0.5, 600.0)
    assert p.scorer.config.guard and p.scorer.config.blend_c == blend.scorer.config.c
    assert p.scorer.config.users >= 3000 and p.name == "communities_ranked"
    assert type(p.selector).__name__ == "TopK"


def test_gap_columns_are_each_sources_score_minus_its_best_in_the_list(lists):
    names = lists.source_names
    fn = lists.feature_names
    first = lists.X[: lists.groups[0]]
    for s in names:
        score, gap = first[:, fn.index(f"{s}_score")], first[:, fn.index(f"{s}_gap")]
        found = ~np.isnan(score)
        assert np.array_equal(found, ~np.isnan(gap))
        if found.any():
            np.testing.assert_allclose(gap[found], score[found] - score[found].max(), rtol=1e-6, atol=1e-6)
            assert gap[found].max() == 0.0


def test_order_objective_is_a_setting_and_bad_values_name_the_field(lists):
    lr = Ranker(rounds=30, min_data_in_leaf=20, seed=0, order="lambdarank").fit(lists)
    xe = Ranker(rounds=30, min_data_in_leaf=20, seed=0).fit(lists)
    assert xe.params["order"] == "rank_xendcg" and lr.params["order"] == "lambdarank"
    assert not np.allclose(lr.score(lists.X[:200]), xe.score(lists.X[:200]))
    with pytest.raises(ValidationError, match="order"):
        Ranker(order="pairwise")
    with pytest.raises(ValidationError, match="scorer.order|lgbm_ranker.order"):
        from belong.ranking.scorer import LgbmRanker, LgbmRankerConfig

        LgbmRanker(LgbmRankerConfig(order="pairwise"))


def test_threads_do_not_change_the_boosters(lists):
    one = Ranker(rounds=20, min_data_in_leaf=20, seed=0, threads=1).fit(lists)
    two = Ranker(rounds=20, min_data_in_leaf=20, seed=0, threads=2).fit(lists)
    np.testing.assert_array_equal(one.score(lists.X[:300]), two.score(lists.X[:300]))


def test_size_taste_columns_are_the_users_mean_log_size_and_the_candidates_size_against_it(lists, sim_state):
    fn = lists.feature_names
    first = lists.X[: lists.groups[0]]
    taste, vs, size = (first[:, fn.index(n)] for n in ("user_log_members", "log_members_vs_user", "log_members"))
    assert np.unique(taste[~np.isnan(taste)]).size <= 1  # one value per list (the user's)
    ok = ~np.isnan(vs)
    np.testing.assert_allclose(vs[ok], size[ok] - taste[ok], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("surface", ["fixture", "communities_ranked"])
@pytest.mark.parametrize("by", ["random", "time"])
def test_training_lists_on_arrays_equal_the_object_path_row_for_row(sim_state, surface_toml, surface, by):
    """The default list builder runs each chunk's candidate stage as one batch on arrays; the reference runs one
    request at a time on candidate objects. Same lists, same order, the same feature values (NaN where NaN)."""
    p = surfaces.load(str(surface_toml) if surface == "fixture" else surface)
    kw = {"fraction": 0.2, "max_users": 250, "seed": 3, "by": by}
    fast = build_lists(sim_state, p.fresh, **kw)
    ref = build_lists(sim_state, p.fresh, arrays=False, **kw)
    assert fast.stats["lists"] == ref.stats["lists"] > 100
    assert fast.feature_names == ref.feature_names
    np.testing.assert_array_equal(fast.groups, ref.groups)
    np.testing.assert_array_equal(fast.users, ref.users)
    np.testing.assert_array_equal(fast.items, ref.items)
    np.testing.assert_array_equal(fast.y, ref.y)
    np.testing.assert_array_equal(fast.positives_held, ref.positives_held)
    np.testing.assert_array_equal(fast.X, ref.X)  # NaN in the same places counts as equal
    assert fast.labels.keys() == ref.labels.keys()
    for name in ref.labels:
        np.testing.assert_array_equal(fast.labels[name], ref.labels[name])
    assert fast.stats == ref.stats


def test_guard_test_and_per_list_ndcg_by_hand():
    from belong.ranking.ranker import guard_test, ndcg_per_list

    scores = np.array([3.0, 2.0, 1.0, 5.0, 4.0])
    y = np.array([0, 1, 0, 1, 0], np.float32)
    per = ndcg_per_list(scores, y, np.array([3, 2]), np.array([2, 1]), k=2)
    assert per.mean() == pytest.approx(list_metrics(scores, y, np.array([3, 2]), np.array([2, 1]), k=2)["ndcg@2"])
    same = guard_test(per, per)
    assert same == {"lists": 2, "ndcg_diff": 0.0, "t_pvalue": 1.0, "p_better": 1.0}
    rng = np.random.default_rng(0)
    b = rng.random(200)
    better = guard_test(b + 0.05 + 0.01 * rng.standard_normal(200), b)
    assert better["ndcg_diff"] == pytest.approx(0.05, abs=0.005) and better["t_pvalue"] < 1e-6
    assert better["p_better"] == pytest.approx(better["t_pvalue"] / 2)
    worse = guard_test(b, b + 0.05 + 0.01 * rng.standard_normal(200))
    assert worse["t_pvalue"] < 1e-6 and worse["p_better"] > 0.999


def test_blend_of_rank_columns_is_the_scorers_weighted_rrf(sim_state, surface_toml):
    """The blend the ranker is measured against (from the rank columns of its feature rows) is the surface's
    ``weighted_rrf`` score of the same candidates, and the guarded scorer serves exactly that."""
    from belong.pipeline.pipeline import Pipeline
    from belong.pipeline.scorers import WeightedRRF, WeightedRRFConfig
    from belong.pipeline.types import Request
    from belong.ranking.dataset import feature_matrix
    from belong.ranking.ranker import blend_of_ranks

    p = surfaces.load(str(surface_toml))
    data = p.to_dict()
    for s in data["sources"]:
        s["weight"] = {"co_membership": 1.0, "friends_joined": 0.7, "trending": 0.2}.get(s["type"], 0.1)
    p = Pipeline.from_dict(data).fit(sim_state)
    rrf = WeightedRRF(WeightedRRFConfig(c=60.0))
    rrf.source_weights = p.scorer.source_weights
    names = [s.name for s in p.sources]
    n = 0
    for u in range(0, sim_state.n_users, 97):
        req = Request(sim_state.users.ids[u], p.surface, k=20, explain=False)
        cands = [m for m, _ in p.candidates(req, score=False).ranked]
        if not cands:
            continue
        X = feature_matrix(names, req, sim_state, cands)
        want = rrf.score(req, sim_state, cands)
        np.testing.assert_allclose(blend_of_ranks(X, names, p.scorer.source_weights, 60.0), want, rtol=1e-12)
        np.testing.assert_array_equal(p.scorer.blend(cands), want)
        n += 1
    assert n > 5


def test_guard_serves_the_blend_unless_the_ranker_beats_it(sim_state, surface_toml):
    from belong.pipeline.pipeline import Pipeline
    from belong.pipeline.scorers import WeightedRRF, WeightedRRFConfig
    from belong.pipeline.types import Request

    data = surfaces.load(str(surface_toml)).to_dict()
    data["selector"] = {"type": "top_k"}
    p = Pipeline.from_dict(data).fit(sim_state)
    scorer = p.scorer
    g, split = scorer.fitted()["guard"], scorer.fitted()["guard_split"]
    # out of fold over every list (guard_folds = 5 by default); the split's own test kept beside it
    assert g["folds"] == 5 and g["lists"] == scorer.ranker.metrics["lists"]["lists"] and 0.0 <= g["t_pvalue"] <= 1.0
    assert split["lists"] == scorer.ranker.metrics["validation_lists"] and 0.0 <= split["t_pvalue"] <= 1.0
    assert {"blend", "served"} <= set(scorer.fitted())
    users = [sim_state.users.ids[u] for u in range(0, sim_state.n_users, 37)]
    reqs = [Request(u, p.surface, k=20, explain=False) for u in users]
    rrf = WeightedRRF(WeightedRRFConfig(c=60.0))
    rrf.source_weights = scorer.source_weights

    # better on the lists, not significantly: the blend
    scorer.ranker.metrics["guard"] = {"lists": 80, "ndcg_diff": 0.01, "t_pvalue": 0.2, "p_better": 0.1}
    assert scorer.uses_blend() and scorer.fitted()["order_used"] == "blend"
    guarded = p.rank_batch(reqs)
    assert guarded == p.rank_batch(reqs, arrays=False)  # arrays and candidate objects: the same blend
    for req, answer in zip(reqs[:10], guarded[:10], strict=True):
        out = p.candidates(req, score=False).ranked
        cands = [m for m, _ in out]
        assert [s for _, s in answer] == pytest.approx(
            sorted(rrf.score(req, sim_state, cands).tolist(), reverse=True)[: len(answer)])
    explained = p.run(Request(users[0], p.surface, k=20, explain=True))
    assert all("p_join" in it.features for it in explained.items)  # explanations keep the ranker's p(join)
    assert [it.index for it in explained.items] == [i for i, _ in guarded[0]]

    # beats the blend (one-sided): the ranker
    scorer.ranker.metrics["guard"] = {"lists": 80, "ndcg_diff": 0.01, "t_pvalue": 0.06, "p_better": 0.03}
    assert not scorer.uses_blend() and scorer.fitted()["order_used"] == "ranker"
    assert p.rank_batch(reqs) != guarded
    # loses to it: the blend
    scorer.ranker.metrics["guard"] = {"lists": 80, "ndcg_diff": -0.01, "t_pvalue": 0.001, "p_better": 0.9995}
    assert scorer.uses_blend()
    scorer.config.guard = False
    assert not scorer.uses_blend()
    del scorer.ranker.metrics["guard"]  # a ranker saved before the guard keeps its own order
    scorer.config.guard = True
    assert not scorer.uses_blend()


def test_guard_settings_name_the_field():
    from belong.ranking.scorer import LgbmRanker, LgbmRankerConfig

    with pytest.raises(ValidationError, match="guard_p"):
        LgbmRanker(LgbmRankerConfig(guard_p=0.0))
    with pytest.raises(ValidationError, match="blend_c"):
        LgbmRanker(LgbmRankerConfig(blend_c=-1.0))
    for bad in (1, -2):
        with pytest.raises(ValidationError, match="guard_folds"):
            LgbmRanker(LgbmRankerConfig(guard_folds=bad))


def test_out_of_fold_scores_come_from_rankers_that_never_saw_the_list(lists):
    """Each row is scored by a ranker fitted, with the same settings and the fitted ranker's rounds, on the other
    folds' lists only: refitting that ranker by hand gives the same scores (the boosters are deterministic)."""
    full = Ranker(rounds=40, min_data_in_leaf=20, seed=0, objectives={"join": 1.0}).fit(lists)
    oof = full.out_of_fold(lists, 3)
    rounds = full.metrics["best_iteration"]
    fold = np.random.default_rng(1).permutation(lists.groups.size) % 3
    row_fold = np.repeat(fold, lists.groups)
    for k in range(3):
        alone = Ranker(rounds=rounds, min_data_in_leaf=20, seed=0, objectives={"join": 1.0})
        alone.fit(lists.subset(fold != k), early_stopping=False)
        assert alone.order is not None and alone.order.num_trees() == rounds  # no early stopping
        np.testing.assert_array_equal(oof[row_fold == k], alone.score(lists.X[row_fold == k]))
    # the ranker fitted on every list scores those rows differently (it saw them)
    assert not np.array_equal(full.score(lists.X), oof)


def test_subset_keeps_whole_lists_and_their_row_labels(lists):
    keep = np.arange(lists.groups.size) % 3 == 0
    sub = lists.subset(keep)
    rows = np.repeat(keep, lists.groups)
    assert sub.groups.tolist() == lists.groups[keep].tolist() and sub.groups.sum() == sub.y.size
    np.testing.assert_array_equal(sub.X, lists.X[rows])
    np.testing.assert_array_equal(sub.y, lists.y[rows])
    assert sub.users.tolist() == lists.users[keep].tolist()
    assert sub.positives_held.tolist() == lists.positives_held[keep].tolist()
    assert sub.items.tolist() == lists.items[rows].tolist()


def test_the_cross_fitted_guard_compares_every_list_and_falls_back_to_the_split_when_folds_cannot_fit(lists):
    from belong.ranking.ranker import blend_of_ranks, guard_test, ndcg_per_list

    weights = {s: 1.0 for s in lists.source_names}
    r = Ranker(rounds=40, min_data_in_leaf=20, seed=0).fit(lists, blend=(weights, 60.0))
    r.cross_fitted_guard(lists, (weights, 60.0), 4)
    g = r.metrics["guard"]
    y = (lists.y > 0).astype(np.float32)
    want = guard_test(ndcg_per_list(r.out_of_fold(lists, 4), y, lists.groups, lists.positives_held),
                      ndcg_per_list(blend_of_ranks(lists.X, lists.source_names, weights, 60.0), y, lists.groups,
                                    lists.positives_held))
    assert g == {**want, "folds": 4} and g["lists"] == lists.groups.size
    assert r.metrics["guard_split"]["lists"] == r.metrics["validation_lists"]
    # 11 lists: a fold's other lists (8 or 9) are too few to fit on: the split's test stays the guard
    small = lists.subset(np.isin(np.arange(lists.groups.size), np.flatnonzero(lists.positives_held > 0)[:11]))
    r = Ranker(rounds=20, min_data_in_leaf=5, seed=0).fit(small, blend=(weights, 60.0))
    r.cross_fitted_guard(small, (weights, 60.0), 5)
    assert "too little data" in r.metrics["guard"]["folds_skipped"]
    assert "guard_split" not in r.metrics and r.metrics["guard"]["lists"] == r.metrics["validation_lists"]
