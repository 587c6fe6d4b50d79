"""The ranking tests' fixtures: the shared simulated world and ranked surface."""

from ranked_world import sim_state, sim_world, surface_toml  # noqa: F401 - fixtures
