from __future__ import annotations

import pytest

from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world


@pytest.fixture()
def world():
    return toy_world()


@pytest.fixture()
def state(world) -> WorldState:
    return from_world(world)
