"""Fixtures of the feature tests (helpers live in ``features_helpers``)."""

from __future__ import annotations

import pytest
from features_helpers import RandomWorld


@pytest.fixture(scope="module")
def world() -> RandomWorld:
    return RandomWorld()
