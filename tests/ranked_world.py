"""A small simulated world and a cheap ranked surface: fixtures shared by the ranking and training tests
(their ``conftest.py`` imports them)."""

from __future__ import annotations

from pathlib import Path

import pytest

import belong.ranking  # noqa: F401 - registers the ranking components
from belong.simulate import simulate_world
from belong.state import WorldState, from_world

SURFACE = """
surface = "communities"
[[sources]]
type = "co_membership"
model = "itemknn"
k = 100
[[sources]]
type = "friends_joined"
k = 50
[[sources]]
type = "trending"
k = 50
[[sources]]
type = "new_communities"
k = 20
[[hydrators]]
type = "social"
[[filters]]
type = "safety_rules"
[scorer]
type = "lgbm_ranker"
users = 400
rounds = 60
min_data_in_leaf = 20
[selector]
type = "mmr"
relevance = 0.9
epsilon = 0.2
explore_slot = 3
"""


@pytest.fixture(scope="session")
def sim_world():
    return simulate_world(1500, 120, seed=7)


@pytest.fixture(scope="session")
def sim_state(sim_world) -> WorldState:
    """The simulated world's state, with 1% of users banned and 2% of communities deleted by moderation."""
    st = from_world(sim_world)
    for u in range(0, st.n_users, 100):
        st.users.status[u] = "banned"
    for c in range(0, st.n_communities, 50):
        st.communities.status[c] = "deleted"
    return st


@pytest.fixture(scope="session")
def surface_toml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("surface") / "ranked.toml"
    path.write_text(SURFACE, encoding="utf-8")
    return path
