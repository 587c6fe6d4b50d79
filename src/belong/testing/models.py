"""The model contract (:class:`~belong.models.base.Recommender`) as pytest tests, and the tiny datasets with known
answers it fits on."""

from __future__ import annotations

import tomllib
from collections.abc import Callable

import numpy as np
import pytest
import scipy.sparse as sp

from belong.errors import UnknownIdError, ValidationError
from belong.interactions import Interactions
from belong.models import config_toml
from belong.models.base import Recommender

MakeModel = Callable[[], Recommender]


def two_clusters() -> Interactions:
    """Users u00-u09 use 3 of the 5 items a0-a4, users u10-u19 3 of b0-b4; no user crosses clusters.

    User u00 has a0, a1, a2: a personalised model must rank a3, a4 (cluster A) above every b item. Every item has
    6 users.
    """
    users, items = [], []
    for c, prefix in enumerate("ab"):
        for j in range(10):
            u = f"u{10 * c + j:02d}"
            for k in range(3):
                users.append(u)
                items.append(f"{prefix}{(j + k) % 5}")
    return Interactions.from_ids(users, items)


def two_cliques() -> sp.csr_matrix:
    """Nodes 0-5 and 6-11 are two 6-cliques, each missing one edge: (0, 1) and (6, 7)."""
    n = 12
    A = np.zeros((n, n), np.float32)
    for block in (range(0, 6), range(6, 12)):
        for i in block:
            for j in block:
                if i != j:
                    A[i, j] = 1
    A[0, 1] = A[1, 0] = A[6, 7] = A[7, 6] = 0
    return sp.csr_matrix(A)


class ModelContract:
    """Top-k of unseen items best first, a known answer on tiny data, determinism, errors, config round trips.

    Subclass it as ``Test...`` and supply the fixture ``make_model``: a callable returning a fresh, unfitted
    :class:`~belong.models.base.Recommender`, configured the same way on every call (seeded, single-threaded, and
    small enough to behave on 20 users x 10 items). A graph model (``square = True``) is fitted on
    :func:`two_cliques`, any other on :func:`two_clusters`; ``personalised = False`` (popularity) expects a tie.
    """

    @staticmethod
    def fit_tiny(make_model: MakeModel) -> Recommender:
        """A model from ``make_model`` fitted on the tiny dataset of its kind."""
        model = make_model()
        return model.fit(two_cliques() if model.square else two_clusters())

    def test_recommend_returns_k_unseen_items(self, make_model: MakeModel) -> None:
        model = self.fit_tiny(make_model)
        X = model.X
        users = np.arange(X.shape[0])
        k = 2
        items, scores = model.recommend_idx(users, k)
        assert items.shape == (len(users), k)
        for u in users:
            row = items[u][items[u] >= 0]
            assert len(row) == k, f"{model.name}: user {u} got {row}"
            assert not set(row) & set(X[u].indices), f"{model.name}: recommended a seen item to user {u}"
            assert np.all(np.diff(scores[u]) <= 0), "scores must be best first"
            if model.square:
                assert u not in row, f"{model.name}: recommended user {u} to itself"

    def test_known_answer(self, make_model: MakeModel) -> None:
        model = self.fit_tiny(make_model)
        if model.square:
            # the only non-friend with common friends of 0 is 1 (and of 6 is 7); the other clique is unreachable
            items, _ = model.recommend_idx(np.array([0, 6]), 1)
            assert items[:, 0].tolist() == [1, 7]
        elif not model.personalised:
            # every item has 6 users: the ranking is a tie; all unseen items are offered with equal score, to all
            items, scores = model.recommend_idx(np.array([0, 15]), 7)
            assert np.all(items >= 0) and np.all(np.isfinite(scores))
            assert np.all(scores == scores[0, 0])
        else:
            recs = model.recommend(["u00", "u15"], k=2)
            assert {i for i, _ in recs[0]} == {"a3", "a4"}
            assert all(i.startswith("b") for i, _ in recs[1])

    def test_deterministic_with_seed(self, make_model: MakeModel) -> None:
        a, b = self.fit_tiny(make_model), self.fit_tiny(make_model)
        users = np.arange(a.X.shape[0])
        np.testing.assert_allclose(a.score_users(users), b.score_users(users), rtol=1e-5)

    def test_unknown_user_raises(self, make_model: MakeModel) -> None:
        model = self.fit_tiny(make_model)
        with pytest.raises(UnknownIdError):
            model.recommend(["nobody"], k=3)

    def test_recommend_before_fit_is_an_error(self, make_model: MakeModel) -> None:
        with pytest.raises(RuntimeError):
            make_model().recommend_idx(np.array([0]), 3)

    def test_config_round_trips_through_dict_and_toml(self, make_model: MakeModel) -> None:
        model = self.fit_tiny(make_model)
        config = model.get_config()
        assert type(model).from_config(config).get_config() == config
        text = config_toml.dumps(config, table=f"models.{model.name}")
        parsed = tomllib.loads(text)["models"][model.name]
        assert parsed == config
        assert type(model).from_config(parsed).get_config() == config

    def test_bad_params_raise_validation_error(self, make_model: MakeModel) -> None:
        cls = type(make_model())
        with pytest.raises(ValidationError) as info:
            cls(no_such_parameter=1)
        assert info.value.field == f"{cls.name}.config"

    def test_score_items_matches_full_scores(self, make_model: MakeModel) -> None:
        model = self.fit_tiny(make_model)
        users = np.array([0, 3])
        cand = np.array([[0, 1, 2], [4, 3, 2]])
        full = model.score_users(users, filter_seen=False)
        np.testing.assert_allclose(model.score_items(users, cand), np.take_along_axis(full, cand, axis=1))

    def test_graph_models_need_a_square_matrix(self, make_model: MakeModel) -> None:
        """A graph model refuses a users x items matrix; any other model fits one given as a sparse matrix."""
        model = make_model()
        if model.square:
            with pytest.raises(ValidationError):
                model.fit(sp.csr_matrix(np.ones((3, 4), np.float32)))
        else:
            X = two_clusters().csr()
            assert model.fit(X).X.shape == X.shape == (20, 10)

    def test_empty_data_is_rejected(self, make_model: MakeModel) -> None:
        with pytest.raises(ValidationError):
            make_model().fit(sp.csr_matrix((4, 4), dtype=np.float32))
