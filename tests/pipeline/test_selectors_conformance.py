"""The shipped selectors (``top_k``, ``mmr``) honour the selector contract (belong.testing.components)."""

from __future__ import annotations

import pytest

from belong import surfaces
from belong.pipeline.components import REGISTRY, Selector
from belong.testing import SelectorContract

assert surfaces  # imported first: every shipped component type is registered
SELECTORS = sorted(REGISTRY["selector"])


def test_the_shipped_selectors() -> None:
    assert SELECTORS == ["mmr", "top_k"]
    assert REGISTRY["selector"].get("top_k").best_first and not REGISTRY["selector"].get("mmr").best_first


class TestSelectors(SelectorContract):
    @pytest.fixture(params=SELECTORS)
    def selector(self, request: pytest.FixtureRequest) -> Selector:
        return REGISTRY["selector"].get(request.param)()  # type: ignore[return-value]
