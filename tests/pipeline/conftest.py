from __future__ import annotations

import pytest
from toy_world import toy_world

from belong.pipeline import WorldState


@pytest.fixture()
def world():
    return toy_world()


@pytest.fixture()
def state(world) -> WorldState:
    return WorldState.from_world(world)
