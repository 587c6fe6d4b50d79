from __future__ import annotations

import numpy as np
import pytest

from belong.domain import Event, EventType, TargetKind
from belong.errors import UnknownIdError
from belong.interactions import Interactions
from belong.pipeline import NewUser, Request
from belong.state import WorldState, from_interactions


def names(state: WorldState, idx) -> set[str]:
    return {state.communities.ids[i] for i in idx}


def friends(state: WorldState, uid: str) -> set[str]:
    return {state.users.ids[i] for i in state.friends_of(state.users.index[uid])}


def ev(i: int, etype: EventType, actor: str, target: str, kind: TargetKind, ts: int = 1_800_000_000_000_000) -> Event:
    return Event(event_id=f"n{i}", ts_us=ts, type=etype, actor=actor, target=target, target_kind=kind)


def test_memberships_are_joins_minus_later_leaves(state):
    alice = state.users.index["alice"]
    assert names(state, state.communities_of(alice)) == {"rust", "zig"}  # python joined then left
    assert "alice" not in {state.users.ids[u] for u in state.members_of(state.communities.index["python"])}


def test_friendships_are_accepts_minus_removes_and_symmetric(state):
    assert friends(state, "alice") == {"bob", "grace", "frank"}  # dave removed the friendship
    assert "alice" in friends(state, "bob")
    F = state.friend_csr()
    assert (F != F.T).nnz == 0 and F.diagonal().sum() == 0


def test_blocks_and_attributes(state):
    a = state.users.index["alice"]
    assert state.blocked_users[a] == {state.users.index["u5"]}
    assert state.users.index["alice"] in state.blocked_users[state.users.index["erin"]]
    assert state.blocked_communities[a] == {state.communities.index["speedrun"]}
    c = state.communities.index["adults"]
    assert state.communities.age_restricted[c] and state.communities.name[c] == "After Dark"
    assert state.users.age_group[state.users.index["carol"]] == "teen"


def test_heat_per_locale_and_age(state):
    g, p = state.communities.index["gaming"], state.communities.index["python"]
    assert state.community_heat["all"][g] > 0
    assert state.community_heat["locale:de"][p] > state.community_heat["locale:de"][g]
    assert "age:adult" in state.community_heat


def test_apply_join_leave_friend_block_incrementally(state):
    a, zig = state.users.index["alice"], state.communities.index["zig"]
    v0 = state.version
    state.apply(ev(1, EventType.JOIN, "alice", "gaming", TargetKind.COMMUNITY))
    state.apply(ev(2, EventType.LEAVE, "alice", "zig", TargetKind.COMMUNITY))
    state.apply(ev(3, EventType.FRIEND_ACCEPT, "carol", "alice", TargetKind.USER))
    state.apply(ev(4, EventType.BLOCK, "alice", "heidi", TargetKind.USER))
    assert state.version > v0
    assert names(state, state.communities_of(a)) == {"rust", "gaming"}
    assert a not in state.members_of(zig).tolist()
    assert a in state.members_of(state.communities.index["gaming"]).tolist()
    assert "carol" in friends(state, "alice") and "alice" in friends(state, "carol")
    assert state.users.index["heidi"] in state.blocked_users[a]
    M = state.membership_csr()
    assert M[a, zig] == 0 and M[a, state.communities.index["gaming"]] == 1
    assert state.friend_csr()[a, state.users.index["carol"]] == 1


def test_apply_creates_new_users_and_communities_and_heat(state):
    n_u, n_c = state.n_users, state.n_communities
    state.apply(ev(5, EventType.JOIN, "zed", "brand-new", TargetKind.COMMUNITY))
    assert state.n_users == n_u + 1 and state.n_communities == n_c + 1
    c = state.communities.index["brand-new"]
    assert state.community_heat["all"].size == state.n_communities and state.community_heat["all"][c] > 0
    assert state.membership_csr().shape == (n_u + 1, n_c + 1)


def test_profile_unknown_and_new_user(state):
    with pytest.raises(UnknownIdError, match="nobody"):
        state.profile(Request("nobody"))
    p = state.profile(Request("nobody", new_user=NewUser(locale="de", interests=("python",))))
    assert p.idx is None and p.is_new and p.locale == "de" and p.interests == ("python",)


def test_from_interactions_bipartite_and_square():
    data = Interactions.from_ids(["a", "a", "b", "c"], ["x", "y", "x", "z"])
    st = from_interactions(data)
    assert st.communities.ids == data.item_ids.tolist() and st.users.ids == data.user_ids.tolist()
    assert names(st, st.communities_of(0)) == {"x", "y"}
    g = Interactions.from_ids(["1", "2", "3"], ["2", "3", "1"], user_ids=np.array(["1", "2", "3"]),
                              item_ids=np.array(["1", "2", "3"]))
    sq = from_interactions(g)
    assert sq.n_communities == 0 and sq.friend_csr().nnz == 6


def test_member_counts_match_member_lists_through_joins_leaves_and_rejoins(state):
    state.apply(ev(11, EventType.JOIN, "alice", "gaming", TargetKind.COMMUNITY))
    state.apply(ev(12, EventType.LEAVE, "alice", "rust", TargetKind.COMMUNITY))
    state.apply(ev(13, EventType.JOIN, "alice", "rust", TargetKind.COMMUNITY))  # back in: counted once
    state.apply(ev(14, EventType.JOIN, "bob", "brand-new-2", TargetKind.COMMUNITY))  # beyond the base's columns
    everyone = np.arange(state.n_communities)
    assert state.member_counts(everyone).tolist() == [state.members_of(int(c)).size for c in everyone]


def test_community_flags_follow_attribute_changes(state):
    from belong.domain import Community, EntityStatus

    rust = state.communities.index["rust"]
    assert state.community_flags().active[rust]
    state.add_community(Community(id="rust", name="rust", created_at_us=1, status=EntityStatus.BANNED,
                                  discoverable=False))
    flags = state.community_flags()
    assert not flags.active[rust] and not flags.discoverable[rust]
    assert flags.active.size == state.n_communities
    with pytest.raises(ValueError):
        flags.active[rust] = True  # shared by every request: read-only


def test_rules_revision_counts_every_change_of_the_user_and_of_any_community(state):
    from belong.domain import Community

    a, b, zed = (state.users.index[u] for u in ("alice", "bob", "erin"))
    before = {u: state.rules_revision(u) for u in (a, b, zed)}
    state.apply(ev(21, EventType.FRIEND_ACCEPT, "bob", "alice", TargetKind.USER))  # done to alice by bob
    assert state.rules_revision(a)[0] > before[a][0] and state.rules_revision(b)[0] > before[b][0]
    assert state.rules_revision(zed) == before[zed]  # nothing of erin's changed
    state.add_community(Community(id="brand-new-3", name="x", created_at_us=1))
    assert state.rules_revision(zed)[1] > before[zed][1]
    assert state.rules_revision(None) == (0, state.c_rev)


def _relations(density: float, random_state: int):
    """A 60 x 25 0/1 base as a directed ``Relation``, then its co-occurrence (60 x 60) as a symmetric one:
    ``(symmetric, base matrix, relation)``."""
    import scipy.sparse as sp

    from belong.state.relation import Relation

    base = sp.random(60, 25, density=density, random_state=random_state, format="csr")
    base.data[:] = 1.0
    for symmetric in (False, True):
        b = (base @ base.T).tocsr() if symmetric else base
        b.data[:] = 1.0
        yield symmetric, b, Relation(b, symmetric=symmetric)


def test_col_sizes_exact_after_edits():
    """``Relation.col_sizes`` counts a column's edits against its base without merging it: equal to ``col(j).size``
    after joins, leaves, re-joins and leaves of never-based entries (new columns too)."""
    import numpy as np


    rng = np.random.default_rng(3)
    for symmetric, b, rel in _relations(density=0.2, random_state=4):
        n_cols = b.shape[1] + (0 if symmetric else 3)
        n_rows = b.shape[0]
        for _ in range(600):
            i, j = int(rng.integers(n_rows)), int(rng.integers(n_cols if not symmetric else n_rows))
            rel.set(i, j, bool(rng.random() < 0.5))
        js = np.arange(n_cols if not symmetric else n_rows)
        assert rel.col_sizes(js).tolist() == [rel.col(int(j)).size for j in js]


def test_rows_meet_is_row_by_row_after_edits():
    """``Relation.rows_meet`` (the base's rows at once, edited rows one by one) says what ``cols[row(i)].any()``
    says for every row: base rows, edited rows, rows beyond the base, columns beyond ``cols``."""


    rng = np.random.default_rng(8)
    for symmetric, b, rel in _relations(density=0.1, random_state=5):
        n_cols = b.shape[1] if not symmetric else b.shape[0]
        for _ in range(80):
            rel.set(int(rng.integers(b.shape[0] + 4)), int(rng.integers(n_cols + 2)), bool(rng.random() < 0.6))
        rows = np.r_[np.arange(b.shape[0] + 4), rng.integers(0, b.shape[0], 30)]
        for _ in range(20):
            cols = rng.random(n_cols) < 0.08
            want = [bool(cols[r[r < cols.size]].any()) for r in (rel.row(int(i)) for i in rows)]
            assert rel.rows_meet(rows, cols).tolist() == want
        assert any(want) and not all(want)


def _matrix_by_lil(rel, shape):
    """The merge of base and edits as a LIL round trip does it (what ``Relation.matrix`` did before it merged
    sorted cell keys): additions set their cell to 1, removals then clear it, stored zeros go."""
    import scipy.sparse as sp

    base = rel.base
    if base.shape != shape:
        base = sp.csr_matrix((base.data, base.indices, np.pad(base.indptr, (0, shape[0] - base.shape[0]),
                                                              mode="edge")), shape=shape)
    lil = base.tolil()
    for i, js in rel.add_r.items():
        for j in js:
            lil[i, j] = 1.0
    for i, js in rel.del_r.items():
        for j in js:
            lil[i, j] = 0.0
    out = lil.tocsr()
    out.eliminate_zeros()
    return out


@pytest.mark.parametrize("symmetric", [False, True])
def test_matrix_merges_edits_as_a_lil_round_trip_would(symmetric: bool) -> None:
    """Random relations and random edits (adds, removes, re-adds of stored cells, rows grown): the same CSR, index
    for index, as the LIL merge; indices sorted in every row."""
    import scipy.sparse as sp

    from belong.state.relation import Relation

    rng = np.random.default_rng(7)
    for _ in range(150):
        n = int(rng.integers(1, 30))
        m = n if symmetric else int(rng.integers(1, 30))
        dense = (rng.random((n, m)) < 0.25).astype(np.float32)
        if symmetric:
            dense = np.maximum(dense, dense.T)
        rel = Relation(sp.csr_matrix(dense), symmetric=symmetric)
        for _ in range(int(rng.integers(0, 40))):
            rel.set(int(rng.integers(0, n)), int(rng.integers(0, m)), bool(rng.random() < 0.5))
        shape = (n, n) if symmetric else (n + int(rng.integers(0, 3)), m)
        got, want = rel.matrix(shape), _matrix_by_lil(rel, shape)
        assert got.shape == want.shape and got.dtype == want.dtype and got.has_sorted_indices
        assert np.array_equal(got.indptr, want.indptr) and np.array_equal(got.indices, want.indices)
        assert np.array_equal(got.data, want.data)
        got.data[:] = 5  # a fresh matrix: the caller may modify it
        assert rel.matrix(shape).data.max(initial=0) <= 1
