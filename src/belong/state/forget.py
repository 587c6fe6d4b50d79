"""Forget a user in a live :class:`~belong.state.WorldState` (the in-memory half of ``belong forget``).

A state's tables only grow (an index names one entity for the state's life), so the user's row is masked, not
removed: their memberships, friendships, engagement, blocks and pending requests are cleared (so no source, count
or explanation reaches them through a relation), their profile is emptied and their status set to ``deleted`` (the
``inactive`` rule removes them wherever a fitted source still proposes their index), and their id is replaced by
an opaque placeholder and dropped from the index: the id is no longer in the state, a request naming it is a new
user's, and a debug trace can show only the placeholder. The next state built from the log (the store forgot them)
has no row for them at all.
"""

from __future__ import annotations

from belong.domain import EntityStatus
from belong.state.world import WorldState

PLACEHOLDER = "~forgotten~"


def forget_user(state: WorldState, user_id: str) -> bool:
    """Mask ``user_id`` in ``state`` (see the module docstring); False when the state does not know them."""
    u = state.users.index.pop(user_id, None)
    if u is None:
        return False
    touched = {u}
    for c in state.members.row(u).tolist():
        state.members.set(u, c, False)
        state.members_rev[c] += 1
        state._join_ts_live.pop((u, c), None)  # noqa: SLF001 - the state's own live join times
    for v in state.friends.row(u).tolist():
        state.friends.set(u, v, False)
        touched.add(v)
    for x in state.engaged.row(u).tolist():
        state.engaged.set(u, x, False)
    for table in (state.blocked_users, state.pending_requests):
        touched.update(table.pop(u, set()))
        for other, theirs in table.items():
            if u in theirs:
                theirs.discard(u)
                touched.add(other)
    state.blocked_communities.pop(u, None)
    users = state.users
    users.ids[u] = f"{PLACEHOLDER}{u}"
    users.locale[u], users.interests[u], users.status[u] = "und", (), EntityStatus.DELETED.value
    for v in touched:
        state.user_rev[v] += 1
    state.c_rev += 1  # community counts changed
    state.version += 1
    return True
