"""One suite for every source and filter: deterministic per seed, never the user or what they already have,
respects k, unknown ids fail with a clear error, brand-new users are served without errors."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest
import scipy.sparse as sp

from belong import surfaces
from belong.domain import Surface
from belong.errors import UnknownIdError
from belong.pipeline import NewUser, Request
from belong.pipeline.components import REGISTRY
from belong.pipeline.types import Merged
from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world

SOURCES = sorted(REGISTRY["source"])
FILTERS = sorted(REGISTRY["filter"])
SURFACES = list(Surface)
K = 4


def _sim_world():
    from belong.simulate import simulate_world

    return simulate_world(300, 30, seed=1)


@pytest.fixture(scope="module", params=["toy", "simulated"])
def state(request) -> WorldState:
    return from_world(toy_world() if request.param == "toy" else _sim_world())


@pytest.fixture(scope="module")
def sources(state):
    out = {}
    for name in SOURCES:
        cls = REGISTRY["source"].get(name)
        cfg = cls.Config(k=K)
        if name == "ials_ann":
            cfg.factors, cfg.iterations = 4, 3
        src = cls(cfg)
        src.prepare(state)
        out[name] = src
    return out


def _owned(state: WorldState, surface: Surface, uid: str) -> set[int]:
    u = state.users.index[uid]
    if surface is Surface.COMMUNITIES:
        return set(state.communities_of(u).tolist())
    if surface is Surface.PEOPLE:
        return set(state.friends_of(u).tolist()) | {u}
    return set(state.engaged.row(u).tolist())


def _users(state: WorldState) -> list[str]:
    rng = np.random.default_rng(0)
    return [state.users.ids[i] for i in rng.choice(state.n_users, 12, replace=False)]


def _size(state: WorldState, surface: Surface) -> int:
    return {Surface.COMMUNITIES: state.n_communities, Surface.PEOPLE: state.n_users,
            Surface.CONTENT: state.n_content}[surface]


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", SOURCES)
def test_source_contract(state, sources, name, surface):
    src = sources[name]
    produced = 0
    for uid in _users(state):
        a = src.generate(Request(uid, surface, k=K, seed=3), state)
        b = src.generate(Request(uid, surface, k=K, seed=3), state)
        assert [(c.item, c.score, c.reason) for c in a] == [(c.item, c.score, c.reason) for c in b]  # deterministic
        assert len(a) <= K  # respects k
        assert len({c.item for c in a}) == len(a)  # no duplicates
        owned = _owned(state, surface, uid)
        for c in a:
            assert c.item not in owned, f"{name} returned {c.item} that {uid} already has (or is)"
            assert 0 <= c.item < _size(state, surface)
            assert c.source == name and c.reason.text and math.isfinite(c.score)
        produced += len(a)
    with pytest.raises(UnknownIdError, match="unknown user id"):
        src.generate(Request("no-such-user", surface, k=K), state)
    fresh = src.generate(Request("brand-new", surface, k=K, new_user=NewUser(locale="en", interests=("gaming",))),
                         state)
    assert len(fresh) <= K and all(c.reason.text for c in fresh)


def test_every_source_serves_some_surface(state, sources):
    for name, src in sources.items():
        uids = _users(state)
        total = sum(len(src.generate(Request(u, s, k=K), state)) for u in uids for s in SURFACES)
        new = sum(len(src.generate(Request("nb", s, k=K, new_user=NewUser(locale="en", interests=("gaming",))),
                                   state)) for s in SURFACES)
        assert total + new > 0, f"{name} never produced anything"


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", FILTERS)
def test_filter_contract(state, name, surface):
    flt = REGISTRY["filter"].get(name)()
    flt.prepare(state)
    everything = [Merged(i) for i in range(_size(state, surface))]
    for uid in _users(state):
        req = Request(uid, surface)
        res = flt.apply(req, state, everything)
        again = flt.apply(req, state, everything)
        assert [m.item for m in res.kept] == [m.item for m in again.kept]  # deterministic
        kept, removed = [m.item for m in res.kept], [m.item for m, _ in res.removed]
        assert sorted(kept + removed) == list(range(len(everything)))  # a partition of the input
        assert kept == sorted(kept)  # order preserved
        assert all(isinstance(r, str) and r for _, r in res.removed)
    with pytest.raises(UnknownIdError):
        flt.apply(Request("no-such-user", surface), state, everything)


@pytest.mark.parametrize("surface", SURFACES)
def test_surface_filters_remove_self_and_owned(state, surface):

    p = surfaces.load(surface.value)
    for uid in _users(state):
        cands = [Merged(i) for i in range(_size(state, surface))]
        for f in p.filters:
            cands = f.apply(Request(uid, surface), state, cands).kept
        assert not {m.item for m in cands} & _owned(state, surface, uid)


def test_prepared_sources_restore_from_their_fitted_state(state, sources):
    """Model artifacts save each source's :meth:`fitted` state as data (arrays, sparse matrices, ANN indexes,
    JSON); a fresh source restored from it (or prepared again, when it saves nothing) answers the same."""
    from belong.ann import AnnIndex

    uid = _users(state)[0]
    for name, src in sources.items():
        fitted = src.fitted()
        again = type(src)(src.config)
        if fitted is None:
            again.prepare(state)
        else:
            for key, value in fitted.items():
                ok = (isinstance(value, AnnIndex) or sp.issparse(value)
                      or (isinstance(value, np.ndarray) and value.dtype != object))
                assert ok or orjson.loads(orjson.dumps(value)) == value, (name, key)
            again.restore(fitted, state)
        for surface in SURFACES:
            a = [(c.item, c.score) for c in src.generate(Request(uid, surface, k=K), state)]
            assert a == [(c.item, c.score) for c in again.generate(Request(uid, surface, k=K), state)], name
