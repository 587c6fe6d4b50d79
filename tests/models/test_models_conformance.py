"""Every registered model honours the model contract (belong.testing.models) on tiny data with a known answer."""

from __future__ import annotations

import pytest

from belong.models import registry
from belong.testing import ModelContract
from belong.testing.models import MakeModel

ITEM_MODELS = registry.item_models()
GRAPH_MODELS = registry.graph_models()
ALL_MODELS = list(registry.MODELS)

#: parameters that make each model behave on 20 users x 10 items (fast, single-threaded, seeded).
TINY_PARAMS: dict[str, dict] = {
    "itemknn": {"k": 5, "shrink": 0.0},
    "rp3beta": {"k": 5},
    "ease": {"l2": 1.0},
    "ials": {"factors": 2, "iterations": 20, "regularization": 1.0, "num_threads": 1},
    "bpr": {"factors": 8, "iterations": 300, "learning_rate": 0.05, "num_threads": 1},
}


def test_every_model_is_listed_once() -> None:
    assert sorted(ITEM_MODELS + GRAPH_MODELS) == sorted(ALL_MODELS)
    assert set(GRAPH_MODELS) == {"common-neighbours", "adamic-adar", "resource-allocation", "ppr"}


class TestModels(ModelContract):
    """The contract, once per registered model (ids: the model names)."""

    @pytest.fixture(params=ALL_MODELS)
    def make_model(self, request: pytest.FixtureRequest) -> MakeModel:
        name = request.param
        return lambda: registry.create(name, TINY_PARAMS.get(name))
