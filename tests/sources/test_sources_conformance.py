"""Every registered source and filter honours its contract (belong.testing.components); and what the shipped set
does together: every source serves some surface, each surface's filters remove the user and what they have."""

from __future__ import annotations

import pytest

from belong import surfaces
from belong.domain import Surface
from belong.pipeline import Request
from belong.pipeline.components import REGISTRY, CandidateSource, Filter
from belong.pipeline.types import Merged
from belong.state import WorldState
from belong.testing import FilterContract, SourceContract
from belong.testing.components import NEW_USER, WORLDS, n_items, owned, sample_users, world_state

assert surfaces  # imported first: every shipped component type is registered
SOURCES = sorted(REGISTRY["source"])
FILTERS = sorted(REGISTRY["filter"])
SURFACES = list(Surface)
K = 4


def make_source(name: str) -> CandidateSource:
    """A fresh source of a registered type with a small k (and a quick embedding)."""
    cls = REGISTRY["source"].get(name)
    cfg = cls.Config(k=K)
    if name == "ials_ann":
        cfg.factors, cfg.iterations = 4, 3
    return cls(cfg)  # type: ignore[return-value]


class TestSources(SourceContract):
    @pytest.fixture(params=SOURCES)
    def source(self, request: pytest.FixtureRequest) -> CandidateSource:
        return make_source(request.param)


class TestFilters(FilterContract):
    @pytest.fixture(params=FILTERS)
    def filter_(self, request: pytest.FixtureRequest) -> Filter:
        return REGISTRY["filter"].get(request.param)()  # type: ignore[return-value]


@pytest.fixture(scope="module", params=WORLDS)
def state(request: pytest.FixtureRequest) -> WorldState:
    return world_state(request.param)


@pytest.fixture(scope="module")
def sources(state: WorldState) -> dict[str, CandidateSource]:
    out = {}
    for name in SOURCES:
        src = make_source(name)
        src.prepare(state)
        out[name] = src
    return out


def test_every_source_serves_some_surface(state, sources):
    for name, src in sources.items():
        uids = sample_users(state)
        total = sum(len(src.generate(Request(u, s, k=K), state)) for u in uids for s in SURFACES)
        new = sum(len(src.generate(Request("nb", s, k=K, new_user=NEW_USER), state)) for s in SURFACES)
        assert total + new > 0, f"{name} never produced anything"


@pytest.mark.parametrize("surface", SURFACES)
def test_surface_filters_remove_self_and_owned(state, surface):
    p = surfaces.load(surface.value)
    for uid in sample_users(state):
        cands = [Merged(i) for i in range(n_items(state, surface))]
        for f in p.filters:
            cands = f.apply(Request(uid, surface), state, cands).kept
        assert not {m.item for m in cands} & owned(state, surface, uid)
