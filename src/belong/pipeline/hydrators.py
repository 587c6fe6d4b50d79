"""Shipped hydrators: ``social`` (size and how many of the user's friends relate, on every surface)."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from belong.domain import Surface
from belong.pipeline.components import Hydrator, register
from belong.pipeline.types import Merged, Request
from belong.state import WorldState


@register("hydrator", "social")
class SocialHydrator(Hydrator):
    """Features every surface can show: size (members / friends) and how many of the user's friends relate.

    Friend counts come from one pass over the friends' own lists (not over each candidate's members), so the
    cost follows the user's neighbourhood, not the size of popular communities."""

    def hydrate(self, request: Request, state: WorldState, cands: list[Merged]) -> None:
        if not cands:
            return
        p = state.profile(request)
        people = request.surface is Surface.PEOPLE
        if people:
            targets = [m.item for m in cands]
        elif request.surface is Surface.COMMUNITIES:
            targets = [m.item for m in cands]
        else:
            targets = [state.content.community[m.item] for m in cands]
        near = self._friend_counts(state, p.friends, targets, people)
        if people:
            for m, t, n in zip(cands, targets, near, strict=True):
                m.features["friends"] = float(state.friends_of(t).size)
                m.features["mutual_friends"] = float(n)
            return
        sizes = state.member_counts(np.asarray(targets, np.int64)).tolist()
        for m, size, n in zip(cands, sizes, near, strict=True):
            m.features["members"] = float(size)
            m.features["friends_in"] = float(n)

    def hydrate_arrays(self, request: Request, state: WorldState, items: np.ndarray) -> dict[str, np.ndarray]:
        """:meth:`hydrate`'s features as arrays over ``items`` (offline batches)."""
        p = state.profile(request)
        if request.surface is Surface.CONTENT:
            targets = np.asarray(state.content.community, np.int64)[items] if items.size else items
        else:
            targets = items
        near = np.asarray(self._friend_counts(state, p.friends, targets.tolist(), request.surface is Surface.PEOPLE),
                          np.float64)
        if request.surface is Surface.PEOPLE:
            sizes = np.array([state.friends_of(t).size for t in targets.tolist()], np.float64)
            return {"friends": sizes, "mutual_friends": near}
        return {"members": np.asarray(state.member_counts(targets), np.float64), "friends_in": near}

    def revision(self, request: Request, state: WorldState, cands: list[Merged]) -> Hashable | None:
        """Communities: the user's counter (their friend list) and each candidate's member counter (its members,
        so also which of the friends are in it). Other surfaces: None (always hydrated)."""
        if request.surface is not Surface.COMMUNITIES:
            return None
        p = state.profile(request)
        mrev = state.members_rev
        user_rev = state.user_rev.get(p.idx, 0) if p.idx is not None else 0
        return (p.idx, user_rev, tuple([mrev.get(m.item, 0) for m in cands]))

    @staticmethod
    def _friend_counts(state: WorldState, friends: np.ndarray, targets: list[int], people: bool) -> list[int]:
        """For each target, how many of ``friends`` relate to it (are its members / its friends): the friends'
        lists concatenated once, then counted for the targets only."""
        if not friends.size:
            return [0] * len(targets)
        rows = [state.friends_of(f) if people else state.communities_of(f) for f in friends.tolist()]
        linked = np.concatenate(rows) if rows else np.empty(0, np.int64)
        if not linked.size:
            return [0] * len(targets)
        t = np.asarray(targets, np.int64)
        st = np.sort(t)  # repeated targets (content of one community) count at their first sorted position
        pos = np.searchsorted(st, linked)
        pos[pos >= st.size] = 0
        hit = st[pos] == linked
        counts = np.bincount(pos[hit], minlength=st.size)
        return counts[np.searchsorted(st, t)].tolist()
