"""State snapshots: a snapshot plus the log's tail is the state built from the whole log (compared by ids, so index
order does not matter); files are data, checked against the snapshot's metadata."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from belong.domain import Event, EventType, TargetKind, User
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.schema import users_to_table
from belong.simulate import simulate_world
from belong.state import WorldState, from_store, snapshot


def _pairs(state: WorldState, m, rows, cols) -> set[tuple[str, str]]:
    m = m.tocoo()
    return {(rows[i], cols[j]) for i, j in zip(m.row.tolist(), m.col.tolist(), strict=True) if m.data is not None}


def canonical(state: WorldState) -> dict[str, object]:
    """Everything serving reads of a state, keyed by external ids."""
    u, c, x = state.users.ids, state.communities.ids, state.content.ids
    heat = {}
    for kind, h, ids in (("c", state.community_heat, c), ("x", state.content_heat, x)):
        for key, arr in h.items():
            heat[(kind, key)] = {ids[j]: round(float(v), 9) for j, v in enumerate(np.asarray(arr)[:len(ids)]) if v}
    return {
        "users": {i: (state.users.locale[k], state.users.age_group[k], state.users.interests[k],
                      state.users.status[k]) for k, i in enumerate(u)},
        "communities": {i: (state.communities.name[k], state.communities.tags[k], state.communities.discoverable[k])
                        for k, i in enumerate(c)},
        "content": {i: (c[state.content.community[k]], state.content.kind[k]) for k, i in enumerate(x)},
        "members": _pairs(state, state.membership_csr(), u, c),
        "since": {(u[a], c[b]): t for a, b, t in zip(*state.membership_since().nonzero(),
                                                   state.membership_since().tocoo().data.tolist(), strict=False)},
        "friends": _pairs(state, state.friend_csr(), u, u),
        "engaged": _pairs(state, state.engagement_csr(), u, x),
        "blocked_users": {(u[a], u[b]) for a, bs in state.blocked_users.items() for b in bs},
        "blocked_communities": {(u[a], c[b]) for a, bs in state.blocked_communities.items() for b in bs},
        "pending": {(u[a], u[b]) for a, bs in state.pending_requests.items() for b in bs},
        "now_us": state.now_us,
        "heat": heat,
    }


def _split_store(tmp_path, world, cut: float = 0.7):
    """A store holding the world's events up to the ``cut`` quantile of time (then the rest is appended)."""
    events = world.events.sort_by([("ts_us", "ascending")])
    k = int(events.num_rows * cut)
    store = open_store(tmp_path / "store")
    store.upsert_users(world.users)
    store.upsert_communities(world.communities)
    store.upsert_content(world.content)
    store.append(events.slice(0, k))
    return store, events.slice(k)


@pytest.fixture(scope="module")
def world():
    return simulate_world(400, 30, seed=3, days=40)


def test_snapshot_alone_is_the_state_of_the_log(tmp_path, world):
    store, _ = _split_store(tmp_path, world, cut=1.0)
    store.close()
    info = snapshot.take(tmp_path / "store", tmp_path / "snap")
    assert info.position == world.events.num_rows
    state, done = snapshot.load(tmp_path / "store", tmp_path / "snap")
    assert done["tail_events"] == 0 and done["entities_added"] == 0
    assert canonical(state) == canonical(from_store(tmp_path / "store"))


def test_snapshot_plus_tail_is_the_state_of_the_whole_log(tmp_path, world):
    store, rest = _split_store(tmp_path, world)
    store.close()
    info = snapshot.take(tmp_path / "store", tmp_path / "snap")
    with open_store(tmp_path / "store") as st:
        st.append(rest)
        late = User(id="late-comer", created_at_us=int(rest.column("ts_us")[-1].as_py()), locale="fr")
        st.upsert_users(users_to_table([late]))
        st.append([Event(event_id="late-1", ts_us=late.created_at_us + 1, type=EventType.JOIN, actor="late-comer",
                         target=world.communities.column("id")[0].as_py(), target_kind=TargetKind.COMMUNITY)])
    state, done = snapshot.load(tmp_path / "store", tmp_path / "snap")
    assert done["snapshot_position"] == info.position
    assert done["tail_events"] == rest.num_rows + 1 and done["entities_added"] == 1
    want = canonical(from_store(tmp_path / "store"))
    got = canonical(state)
    assert set(got) == set(want)
    for key in want:
        if key == "heat":  # the tail's heat is decayed event by event: equal to rounding
            assert got[key].keys() == want[key].keys()
            for k in want[key]:
                assert got[key][k].keys() == want[key][k].keys(), k
                a = np.array([got[key][k][i] for i in want[key][k]])
                b = np.array(list(want[key][k].values()))
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
        else:
            assert got[key] == want[key], key
    assert state.users.locale[state.users.index["late-comer"]] == "fr"


def test_snapshot_arrays_are_memory_mapped_and_heat_is_writable(tmp_path, world):
    store, _ = _split_store(tmp_path, world, cut=1.0)
    store.close()
    snapshot.take(tmp_path / "store", tmp_path / "snap")
    state, _ = snapshot.read_snapshot(tmp_path / "snap")
    for a in (state.members._r[1], state.members._c[1], state.activity_log.ts):
        assert isinstance(a.base, np.memmap) and not a.flags.writeable
    assert state.community_heat["all"].flags.writeable
    u, c = 0, int(np.flatnonzero(~state.membership_csr().toarray()[0].astype(bool))[0])
    state.apply(Event(event_id="x", ts_us=state.now_us, type=EventType.JOIN, actor=state.users.ids[u],
                      target=state.communities.ids[c], target_kind=TargetKind.COMMUNITY))
    assert state.is_member(u, c)


def test_snapshot_files_are_checked(tmp_path, world):
    store, _ = _split_store(tmp_path, world, cut=1.0)
    store.close()
    snapshot.take(tmp_path / "store", tmp_path / "snap")
    snapshot.verify(tmp_path / "snap")
    (tmp_path / "snap" / "extra.npy").write_bytes(b"x")
    with pytest.raises(ValidationError, match="extra.npy is not listed"):
        snapshot.read_snapshot(tmp_path / "snap")
    (tmp_path / "snap" / "extra.npy").unlink()
    with (tmp_path / "snap" / "heat.community.0.npy").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ValidationError, match="heat.community.0.npy has"):
        snapshot.read_snapshot(tmp_path / "snap")
    with pytest.raises(ValidationError, match="holds no snapshot.json"):
        snapshot.read_snapshot(tmp_path)
    assert pa  # pyarrow imported for the store's tables
