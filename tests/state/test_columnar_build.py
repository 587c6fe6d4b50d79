"""A state built from dictionary-encoded events (what ``belong train`` keeps) is the state of the plain ones, whole
and cut in time, and entity ids missing from the tables are registered the same way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from belong.simulate import simulate_world
from belong.state import as_of, from_world
from belong.state.build import CODED_COLUMNS, encode_events


def _same(a, b) -> None:
    assert a.users.ids == b.users.ids and a.communities.ids == b.communities.ids and a.content.ids == b.content.ids
    assert a.users.created == b.users.created and a.users.locale == b.users.locale
    for m in ("membership_csr", "friend_csr", "engagement_csr", "membership_since"):
        x, y = getattr(a, m)(), getattr(b, m)()
        assert x.shape == y.shape and (x != y).nnz == 0
    assert dict(a.pending_requests) == dict(b.pending_requests) and dict(a.blocked_users) == dict(b.blocked_users)
    assert a.community_heat.keys() == b.community_heat.keys()
    for key in a.community_heat:
        assert np.array_equal(a.community_heat[key], b.community_heat[key])
    assert np.array_equal(a.join_events.ts, b.join_events.ts)
    assert np.array_equal(a.activity_log.user, b.activity_log.user)


def test_encoded_events_build_the_same_state() -> None:
    world = simulate_world(400, 30, seed=2)
    # ids the entity tables lack (every 5th user and community): registered from the events, in order
    partial = dataclasses.replace(
        world, users=world.users.filter(pa.array([i % 5 != 0 for i in range(world.users.num_rows)])),
        communities=world.communities.filter(pa.array([i % 5 != 0 for i in range(world.communities.num_rows)])))
    for w in (world, partial):
        enc = dataclasses.replace(w, events=encode_events(w.events))
        assert all(pa.types.is_dictionary(enc.events.column(n).type) for n in CODED_COLUMNS)
        plain, coded = from_world(w), from_world(enc)
        _same(plain, coded)
        ts = np.sort(w.events.column("ts_us").to_numpy())
        T = int(ts[int(ts.size * 0.7)])
        _same(as_of(plain, T), as_of(coded, T))
        assert as_of(coded, T).membership_csr().nnz < coded.membership_csr().nnz
