"""The two-sided people ranker: p(request) x p(accept | request) on a simulated world (pair-dependent acceptance),
its logistic regression against scikit-learn, the request outcomes, the one-sided fallback without requests, the
safety rules before scoring and the artifact round trip."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.pipeline.types import Request
from belong.ranking.people_lists import feature_matrix
from belong.ranking.people_two_sided import (
    ACCEPT_FEATURES,
    accept_features,
    fit_logistic,
    predict_logistic,
    request_outcomes,
)
from belong.simulate import simulate_world
from belong.state import from_interactions, from_world
from belong.training.artifact import load_pipeline, write_manifest, write_surface

SMALL = {"users": 300, "rounds": 40, "min_data_in_leaf": 20}


def _pipeline():
    p = surfaces.load("people_two_sided")
    for k, v in SMALL.items():
        setattr(p.scorer.config, k, v)
    return p


@pytest.fixture(scope="module")
def state():
    return from_world(simulate_world(1_000, 40, seed=3))


@pytest.fixture(scope="module")
def fitted(state):
    return _pipeline().fit(state)


def test_logistic_regression_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(3_000, 4)) * [1.0, 3.0, 0.5, 2.0] + [0.0, 1.0, -2.0, 5.0]
    y = (rng.random(3_000) < 1 / (1 + np.exp(-(0.5 + X @ [1.0, -0.3, 2.0, 0.1])))).astype(float)
    model = fit_logistic(X, y, l2=2.0)
    Z = (X - X.mean(axis=0)) / X.std(axis=0)
    ref = LogisticRegression(C=1 / 2.0, tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(model["coef"], ref.coef_[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model["intercept"], ref.intercept_, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(predict_logistic(model, X), ref.predict_proba(Z)[:, 1], atol=1e-6)


def test_request_outcomes_label_lasting_acceptances_only():
    e = np.zeros(0, np.int64)
    ev = {"friend_request": (np.array([0, 2, 4, 6, 8]), np.array([1, 3, 5, 7, 9]), np.array([10, 10, 10, 10, 50])),
          "friend_accept": (np.array([1, 3, 7]), np.array([0, 2, 6]), np.array([12, 13, 5])),
          "friend_remove": (np.array([2]), np.array([3]), np.array([30]))}
    a, b, lab = request_outcomes(ev, 0, 40)
    # 0-1 accepted and kept; 2-3 accepted then removed; 4-5 never answered; 6-7 accepted *before* this request;
    # 8-9 sent after the window
    assert a.tolist() == [0, 2, 4, 6] and b.tolist() == [1, 3, 5, 7]
    assert lab.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert request_outcomes({k: (e, e, e) for k in ev}, 0, 40)[2].size == 0


def test_accept_features_match_a_brute_force_count(state):
    F = state.friend_csr().toarray() > 0
    M = state.membership_csr().toarray() > 0
    rng = np.random.default_rng(1)
    s, r = rng.integers(0, state.n_users, 200), rng.integers(0, state.n_users, 200)
    X = accept_features(state, s, r)
    assert X.shape == (200, len(ACCEPT_FEATURES))
    col = {f: i for i, f in enumerate(ACCEPT_FEATURES)}
    for i in range(200):
        assert X[i, col["log_mutual_friends"]] == pytest.approx(np.log1p((F[s[i]] & F[r[i]]).sum()))
        assert X[i, col["log_shared_communities"]] == pytest.approx(np.log1p((M[s[i]] & M[r[i]]).sum()))
        assert X[i, col["log_degree_receiver"]] == pytest.approx(np.log1p(F[r[i]].sum()))
        assert X[i, col["locale_match"]] == float(state.users.locale[s[i]] == state.users.locale[r[i]])
        ages = {state.users.age_group[s[i]], state.users.age_group[r[i]]}
        assert X[i, col["teen_adult"]] == float(ages == {"teen", "adult"})


def test_two_sided_learns_both_parts_and_keeps_the_safety_rules(fitted, state):
    m = fitted.scorer.fitted()
    two = m["two_sided"]
    assert two["on"] and two["requests"] >= 50 and 0.2 < two["lasting_rate"] < 0.95
    coef = dict(zip(ACCEPT_FEATURES, two["accept_model"]["coef"], strict=True))
    assert coef["locale_match"] > 0  # the simulated receivers accept same-locale requests more often
    assert set(two["validation_on_friendships"]) == {"product", "p_request", "order", "blend"}
    assert m["order_used"] in ("blend", "p_request x p_accept")
    F = state.friend_csr()
    shown = 0
    for u in range(0, state.n_users, 25):
        resp = fitted.run(Request(state.users.ids[u], Surface.PEOPLE, k=10, explain=True))
        friends = set(F[u].indices.tolist())
        scores = [it.score for it in resp.items]
        assert scores == sorted(scores, reverse=True)
        for it in resp.items:
            assert it.index != u and it.index not in friends
            f = it.features
            assert 0 < f["p_request"] <= 1 and 0 < f["p_accept"] <= 1
            assert f["p_join"] == pytest.approx(f["p_request"] * f["p_accept"], abs=2e-6)
            assert not set(f) & {"teen_adult", "same_age_group"}  # age features never leave the scorer
            shown += 1
    assert shown > 50


def test_the_score_is_the_log_product(fitted, state):
    scorer = fitted.scorer
    saved = scorer.config.guard
    scorer.config.guard = False
    try:
        for u in state.users.ids[::40]:
            req = Request(u, Surface.PEOPLE, k=10, explain=False)
            cands = [c for c, _ in fitted.candidates(req, score=False).ranked]
            if len(cands) < 5:
                continue
            X = feature_matrix(scorer.ranker.source_names, req, state, cands, scorer.source_weights)
            p_req = np.clip(scorer.ranker.binary["join"].predict(X), 1e-9, 1)
            items = np.array([c.item for c in cands])
            p_acc = predict_logistic(scorer.accept_model(),
                                     accept_features(state, np.full(items.size, state.users.index[u]), items))
            np.testing.assert_allclose(scorer.score(req, state, cands), np.log(p_req) + np.log(p_acc), rtol=1e-9)
            return
        pytest.fail("no list with 5 candidates")
    finally:
        scorer.config.guard = saved


def test_without_requests_it_is_the_one_sided_ranker():
    """A friendship graph with no requests (hetrec-lastfm, LastFM-Asia): p(accept) cannot be learned, the scorer
    is the people_ranker (p(edge)) and says why."""
    rng = np.random.default_rng(0)
    pairs = np.array([(a, b) for a in range(150) for b in range(a + 1, 150) if rng.random() < 0.05])
    ids = np.array([f"u{i}" for i in range(150)])
    data = Interactions(ids, ids, np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]],
                        meta={"square": True})
    state = from_interactions(data)
    p = _pipeline().fit(state)
    two = p.scorer.fitted()["two_sided"]
    assert two == {"on": False, "why": "no friend_request events"}
    assert p.scorer.accept_model() is None and p.scorer.fitted()["order_used"] in ("blend", "ranker")
    req = Request("u3", Surface.PEOPLE, k=10, explain=False)
    cands = [c for c, _ in p.candidates(req, score=False).ranked]
    X = feature_matrix(p.scorer.ranker.source_names, req, state, cands, p.scorer.source_weights)
    want = p.scorer.blend(cands) if p.scorer.uses_blend() else p.scorer.ranker.score(X)
    np.testing.assert_array_equal(p.scorer.score(req, state, cands), want)


def test_round_trips_through_an_artifact(fitted, state, tmp_path):
    entry = write_surface(tmp_path, fitted)
    write_manifest(tmp_path, {"surfaces": {"people": entry}})
    loaded = load_pipeline(tmp_path, "people", state)
    assert loaded.scorer.accept_model() == fitted.scorer.accept_model()
    for u in state.users.ids[:40]:
        req = Request(u, Surface.PEOPLE, k=10, explain=False)
        assert ([(i.id, i.score) for i in loaded.run(req).items]
                == [(i.id, i.score) for i in fitted.run(req).items])


def test_bad_config_names_the_field():
    import tomllib
    from importlib import resources

    raw = tomllib.loads(resources.files("belong.surfaces").joinpath("people_two_sided.toml").read_text())
    raw["scorer"]["settle_days"] = -1
    with pytest.raises(ValidationError, match="people_two_sided.settle_days"):
        surfaces.from_dict(raw)
