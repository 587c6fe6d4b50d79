"""Every registered model honours the model interface on tiny data with a known answer."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from belong.errors import UnknownIdError, ValidationError
from belong.models import config_toml, registry
from belong.models.base import Recommender

ITEM_MODELS = registry.item_models()
GRAPH_MODELS = registry.graph_models()
ALL_MODELS = list(registry.MODELS)


FitTiny = Callable[[str], Recommender]


def test_every_model_is_listed_once() -> None:
    assert sorted(ITEM_MODELS + GRAPH_MODELS) == sorted(ALL_MODELS)
    assert set(GRAPH_MODELS) == {"common-neighbours", "adamic-adar", "resource-allocation", "ppr"}


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recommend_returns_k_unseen_items(name: str, fit_tiny: FitTiny) -> None:
    model = fit_tiny(name)
    X = model.X
    users = np.arange(X.shape[0])
    k = 2
    items, scores = model.recommend_idx(users, k)
    assert items.shape == (len(users), k)
    for u in users:
        row = items[u][items[u] >= 0]
        assert len(row) == k, f"{name}: user {u} got {row}"
        assert not set(row) & set(X[u].indices), f"{name}: recommended a seen item to user {u}"
        assert np.all(np.diff(scores[u]) <= 0), "scores must be best first"
        if model.square:
            assert u not in row, f"{name}: recommended user {u} to itself"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_known_answer(name: str, fit_tiny: FitTiny) -> None:
    model = fit_tiny(name)
    if model.square:
        # the only non-friend with common friends of 0 is 1 (and of 6 is 7); the other clique is unreachable
        items, _ = model.recommend_idx(np.array([0, 6]), 1)
        assert items[:, 0].tolist() == [1, 7]
    elif name == "most-popular":
        # every item has 6 users: the ranking is a tie; all unseen items are offered with equal score
        _, scores = model.recommend_idx(np.array([0]), 7)
        assert np.all(scores == 6.0)
    else:
        recs = model.recommend(["u00", "u15"], k=2)
        assert {i for i, _ in recs[0]} == {"a3", "a4"}
        assert all(i.startswith("b") for i, _ in recs[1])


@pytest.mark.parametrize("name", ALL_MODELS)
def test_deterministic_with_seed(name: str, fit_tiny: FitTiny) -> None:
    a, b = fit_tiny(name), fit_tiny(name)
    users = np.arange(a.X.shape[0])
    np.testing.assert_allclose(a.score_users(users), b.score_users(users), rtol=1e-5)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_unknown_user_raises(name: str, fit_tiny: FitTiny) -> None:
    model = fit_tiny(name)
    with pytest.raises(UnknownIdError):
        model.recommend(["nobody"], k=3)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_recommend_before_fit_is_an_error(name: str) -> None:
    with pytest.raises(RuntimeError):
        registry.create(name).recommend_idx(np.array([0]), 3)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_config_round_trips_through_dict_and_toml(name: str, fit_tiny: FitTiny) -> None:
    model = fit_tiny(name)
    config = model.get_config()
    assert type(model).from_config(config).get_config() == config
    text = config_toml.dumps(config, table=f"models.{name}")
    parsed = tomllib.loads(text)["models"][name]
    assert parsed == config
    assert type(model).from_config(parsed).get_config() == config


@pytest.mark.parametrize("name", ALL_MODELS)
def test_bad_params_raise_validation_error(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        registry.create(name, {"no_such_parameter": 1})
    assert info.value.field == f"{name}.config"


@pytest.mark.parametrize("name", ALL_MODELS)
def test_score_items_matches_full_scores(name: str, fit_tiny: FitTiny) -> None:
    model = fit_tiny(name)
    users = np.array([0, 3])
    cand = np.array([[0, 1, 2], [4, 3, 2]])
    full = model.score_users(users, filter_seen=False)
    np.testing.assert_allclose(model.score_items(users, cand), np.take_along_axis(full, cand, axis=1))


@pytest.mark.parametrize("name", GRAPH_MODELS)
def test_graph_models_need_a_square_matrix(name: str) -> None:
    with pytest.raises(ValidationError):
        registry.create(name).fit(sp.csr_matrix(np.ones((3, 4), np.float32)))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_empty_data_is_rejected(name: str) -> None:
    with pytest.raises(ValidationError):
        registry.create(name).fit(sp.csr_matrix((4, 4), dtype=np.float32))
