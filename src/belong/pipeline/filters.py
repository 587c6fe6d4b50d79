"""Filters shipped with every surface. Each removes candidates for one rule and says why, in words.

The item space follows the request's surface: community indices (communities), user indices (people), content
indices (content; community rules then apply to the item's community).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from belong.domain import AgeGroup, EntityStatus, Surface
from belong.pipeline.components import Filter, register
from belong.pipeline.types import FilterResult, Merged, Request
from belong.state import Profile, WorldState


def _split(cands: list[Merged], why: Callable[[int], str | None]) -> FilterResult:
    kept, removed = [], []
    for m in cands:
        reason = why(m.item)
        if reason is None:
            kept.append(m)
        else:
            removed.append((m, reason))
    return FilterResult(kept, removed)


#: a list this short is checked item by item against a set (np.isin's sort costs more than it saves)
_SMALL = 64


def _split_mask(cands: list[Merged], bad: np.ndarray, why: Callable[[int], str]) -> FilterResult:
    """Split by a boolean array over ``cands`` (True: removed); ``why`` words the reason of a removed item."""
    if not bad.any():
        return FilterResult(list(cands), [])
    kept, removed = [], []
    for m, b in zip(cands, bad.tolist(), strict=True):
        if b:
            removed.append((m, why(m.item)))
        else:
            kept.append(m)
    return FilterResult(kept, removed)


def _keep_of(items: np.ndarray, why: Callable[[int], str | None]) -> np.ndarray:
    """The keep mask of a per-item rule (``why`` None: kept), item by item as :func:`_split` asks it."""
    return np.fromiter((why(i) is None for i in items.tolist()), bool, items.size)


def _items(cands: list[Merged]) -> np.ndarray:
    return np.fromiter((m.item for m in cands), np.int64, len(cands))


def _community_of(request: Request, state: WorldState, item: int) -> int | None:
    """The community an item is or belongs to (None for people)."""
    if request.surface is Surface.COMMUNITIES:
        return item
    if request.surface is Surface.CONTENT:
        return state.content.community[item]
    return None


@register("filter", "self")
class SelfFilter(Filter):
    """People: never recommend the user to themselves."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        me = state.profile(request).idx
        if request.surface is not Surface.PEOPLE or me is None:
            return FilterResult(list(cands), [])
        return _split(cands, lambda i: "is you" if i == me else None)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        me = state.profile(request).idx
        if request.surface is not Surface.PEOPLE or me is None:
            return np.ones(items.size, bool)
        return items != me


@register("filter", "already_connected")
class AlreadyConnectedFilter(Filter):
    """Already a member (communities), already friends (people), already engaged with (content)."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        p: Profile = state.profile(request)
        if p.idx is None:
            return FilterResult(list(cands), [])
        if request.surface is Surface.COMMUNITIES:
            # a request's chunk of ~25 items is checked against a set: np.isin's set-up cost 40 us there
            if len(cands) > _SMALL:
                return _split_mask(cands, np.isin(_items(cands), p.communities), lambda _: "you are already a member")
            have, reason = set(p.communities.tolist()), "you are already a member"
        elif request.surface is Surface.PEOPLE:
            have, reason = set(p.friends.tolist()), "you are already friends"
        else:
            have, reason = set(state.engaged.row(p.idx).tolist()), "you have already seen it"
        return _split(cands, lambda i: reason if i in have else None)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        p = state.profile(request)
        if p.idx is None:
            return np.ones(items.size, bool)
        if request.surface is Surface.COMMUNITIES:
            have = p.communities
        elif request.surface is Surface.PEOPLE:
            have = p.friends
        else:
            have = state.engaged.row(p.idx)
        return np.isin(items, have, invert=True)


@register("filter", "blocked")
class BlockedFilter(Filter):
    """Blocks in either direction between people; communities the user blocked (and their content)."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        me = state.profile(request).idx
        if me is None:
            return FilterResult(list(cands), [])
        if request.surface is Surface.PEOPLE:
            return _split(cands, self._people_why(me, state))
        comms = state.blocked_communities.get(me, set())
        if not comms:
            return FilterResult(list(cands), [])
        if request.surface is Surface.COMMUNITIES:
            return _split_mask(cands, np.isin(_items(cands), np.fromiter(comms, np.int64, len(comms))),
                               lambda _: "you blocked this community")
        return _split(cands, lambda i: "you blocked this community"
                      if _community_of(request, state, i) in comms else None)

    @staticmethod
    def _people_why(me: int, state: WorldState) -> Callable[[int], str | None]:
        mine = state.blocked_users.get(me, set())

        def why(i: int) -> str | None:
            if i in mine:
                return "you blocked this person"
            if me in state.blocked_users.get(i, ()):
                return "this person blocked you"
            return None
        return why

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        me = state.profile(request).idx
        if me is None:
            return np.ones(items.size, bool)
        if request.surface is Surface.PEOPLE:
            if not state.blocked_users:
                return np.ones(items.size, bool)
            return _keep_of(items, self._people_why(me, state))
        if request.surface is Surface.COMMUNITIES:
            comms = state.blocked_communities.get(me, set())
            return np.isin(items, np.fromiter(comms, np.int64, len(comms)), invert=True)
        return None


@register("filter", "not_discoverable")
class NotDiscoverableFilter(Filter):
    """Communities hidden from discovery or invite-only (content of such communities unless a member)."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        p = state.profile(request)
        if request.surface is Surface.PEOPLE:
            return FilterResult(list(cands), [])
        if request.surface is Surface.COMMUNITIES:
            flags = state.community_flags()
            items = _items(cands)
            return _split_mask(cands, ~flags.discoverable[items] | flags.invite_only[items],
                               lambda c: "the community is not discoverable" if not state.communities.discoverable[c]
                               else "the community is invite-only")
        mine = set(p.communities.tolist())

        def why(i: int) -> str | None:
            c = _community_of(request, state, i)
            if c is None or (request.surface is Surface.CONTENT and c in mine):
                return None
            if not state.communities.discoverable[c]:
                return "the community is not discoverable"
            if state.communities.invite_only[c]:
                return "the community is invite-only"
            return None

        return _split(cands, why)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        if request.surface is Surface.PEOPLE:
            return np.ones(items.size, bool)
        if request.surface is Surface.COMMUNITIES:
            flags = state.community_flags()
            return flags.discoverable[items] & ~flags.invite_only[items]
        return None


@register("filter", "age_restricted")
class AgeRestrictedFilter(Filter):
    """Age-restricted communities (and their content) are not shown to teens or users of unknown age."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        p = state.profile(request)
        if p.age_group == AgeGroup.ADULT or request.surface is Surface.PEOPLE:
            return FilterResult(list(cands), [])
        who = "teens" if p.age_group == AgeGroup.TEEN else "users whose age is unknown"
        if request.surface is Surface.COMMUNITIES:
            return _split_mask(cands, state.community_flags().age_restricted[_items(cands)],
                               lambda _: f"age-restricted, not shown to {who}")

        def why(i: int) -> str | None:
            c = _community_of(request, state, i)
            hidden = c is not None and state.communities.age_restricted[c]
            return f"age-restricted, not shown to {who}" if hidden else None

        return _split(cands, why)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        p = state.profile(request)
        if p.age_group == AgeGroup.ADULT or request.surface is Surface.PEOPLE:
            return np.ones(items.size, bool)
        if request.surface is Surface.COMMUNITIES:
            return ~state.community_flags().age_restricted[items]
        return None


@register("filter", "inactive")
class InactiveFilter(Filter):
    """Deleted or banned users, communities and content (and content of deleted/banned communities)."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        state.profile(request)  # unknown users fail here as everywhere
        active = EntityStatus.ACTIVE.value
        if request.surface is Surface.COMMUNITIES:
            return _split_mask(cands, ~state.community_flags().active[_items(cands)],
                               lambda c: f"it was {state.communities.status[c]}")

        def why(i: int) -> str | None:
            if request.surface is Surface.PEOPLE:
                status = state.users.status[i]
            elif request.surface is Surface.CONTENT:
                status = state.content.status[i]
                if status == active:
                    status = state.communities.status[state.content.community[i]]
            else:
                status = state.communities.status[i]
            return None if status == active else f"it was {status}"

        return _split(cands, why)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        if request.surface is Surface.COMMUNITIES:
            state.profile(request)
            return state.community_flags().active[items].copy()
        if request.surface is Surface.PEOPLE:
            state.profile(request)
            active, status = EntityStatus.ACTIVE.value, state.users.status
            return np.fromiter((status[i] == active for i in items.tolist()), bool, items.size)
        return None
