"""Tiny datasets with known answers (belong.testing.models), as fixtures of the model tests."""

from __future__ import annotations

import pytest
import scipy.sparse as sp

from belong.interactions import Interactions
from belong.testing.models import two_cliques, two_clusters


@pytest.fixture()
def clusters() -> Interactions:
    return two_clusters()


@pytest.fixture()
def cliques() -> sp.csr_matrix:
    return two_cliques()
