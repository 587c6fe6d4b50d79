"""An arm's pipeline: the override applied, every unchanged fitted component shared with the control's."""

from __future__ import annotations

import pytest

from belong import surfaces as catalogue
from belong.experiments.arms import fit_arm
from belong.experiments.declaration import arm_declaration, parse
from belong.pipeline.types import Request
from experiment_helpers import declaration


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory):
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate
    from belong.state import from_store

    path = tmp_path_factory.mktemp("arms-store")
    with open_store(path) as st:
        for part in simulate(200, 20, seed=4):
            write_world(st, part, progress=False)
    return from_store(path)


def test_a_scorer_override_shares_every_fitted_source(state) -> None:
    decl = parse(declaration(arms=[{"name": "control", "weight": 0.5},
                                   {"name": "b", "weight": 0.5, "override": {"scorer.c": 5.0}}]))
    base = catalogue.load("communities").fit(state)
    name, data = arm_declaration(decl, decl.arms[1])
    arm = fit_arm(base, name, data, state)
    assert all(a is b for a, b in zip(arm.sources, base.sources, strict=True))
    assert arm.filters == base.filters and arm.selector is base.selector
    assert arm.scorer is not base.scorer and arm.scorer.config.c == 5.0 and base.scorer.config.c == 60.0
    user = state.users.ids[0]
    got = arm.run(Request(user, base.surface, k=10))
    assert len(got.items) > 0


def test_a_source_override_refits_only_that_source(state) -> None:
    decl = parse(declaration(arms=[{"name": "control", "weight": 0.5},
                                   {"name": "b", "weight": 0.5, "override": {"sources.trending.k": 7}}]))
    base = catalogue.load("communities").fit(state)
    name, data = arm_declaration(decl, decl.arms[1])
    arm = fit_arm(base, name, data, state)
    shared = {s.name for a, s in zip(arm.sources, base.sources, strict=True) if a is s}
    assert shared == {s.name for s in base.sources} - {"trending"}
    assert next(s for s in arm.sources if s.name == "trending").config.k == 7
