"""Safety rules with reasons: the filters the shipped set lacks, and one per-surface policy over all of them.

* ``pending``: people with a pending friend request in either direction (the request is already on its way).
* ``strangers``: adults who are strangers (no mutual friend, no shared community) are never suggested to teens,
  and teens never to adult strangers. Unknown age counts as both teen and adult under the default ``strict``
  policy (it is never a way around the rule); ``unknown_age = "minor"`` treats it as a teen (as the
  age-restriction rule does: unknown-age users then meet each other, never adult strangers);
  ``unknown_age = "adult"`` relaxes it.
* ``safety_rules``: a :class:`Policy` (which rules apply, per surface) over the shipped filters
  (:mod:`belong.pipeline.filters`) and the two above. Each removal's reason names its rule
  (``"blocked: this person blocked you"``), so ``--trace`` shows rule and reason for every removed candidate.

Pending requests are kept by :class:`~belong.state.WorldState` (``pending_requests``, requester ->
{target}), built from the log and updated by ``apply``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import msgspec
import numpy as np

from belong.domain import AgeGroup, Surface
from belong.errors import ValidationError
from belong.pipeline import filters as shipped
from belong.pipeline.components import ComponentConfig, Filter, register
from belong.pipeline.types import FilterResult, Merged, Request
from belong.state import WorldState

UNKNOWN_AGE_POLICIES = ("strict", "minor", "adult")
RULES = ("self", "already_connected", "pending", "blocked", "inactive", "not_discoverable", "age_restricted",
         "strangers")


def _split(cands: list[Merged], why) -> FilterResult:
    kept, removed = [], []
    for m in cands:
        r = why(m.item)
        (kept.append(m) if r is None else removed.append((m, r)))
    return FilterResult(kept, removed)


@register("filter", "pending")
class PendingRequestFilter(Filter):
    """People: someone you sent a friend request to, or who sent you one that is still pending."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        why = self._why(request, state)
        return FilterResult(list(cands), []) if why is None else _split(cands, why)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        why = self._why(request, state)
        return np.ones(items.size, bool) if why is None else shipped._keep_of(items, why)

    @staticmethod
    def _why(request: Request, state: WorldState) -> Callable[[int], str | None] | None:
        """The rule per item (None: it removes nothing for this request)."""
        me = state.profile(request).idx
        pending = state.pending_requests
        if request.surface is not Surface.PEOPLE or me is None or not pending:
            return None
        sent = pending.get(me, set())

        def why(i: int) -> str | None:
            if i in sent:
                return "your friend request is pending"
            if me in pending.get(i, ()):
                return "they sent you a friend request"
            return None

        return why


class StrangersConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    unknown_age: str = "strict"  # strict: unknown counts as teen and as adult | minor: as a teen | adult


def _minor_adult(age: str, unknown_age: str) -> tuple[bool, bool]:
    """(may be a minor, may be an adult) for an age group under the unknown-age policy."""
    if age == AgeGroup.TEEN:
        return True, False
    if age == AgeGroup.ADULT:
        return False, True
    if unknown_age == "minor":
        return True, False
    return unknown_age == "strict", True


@register("filter", "strangers")
class StrangersFilter(Filter):
    """People: no adult stranger for a teen and no teen for an adult stranger (no mutual friend, no shared
    community)."""

    Config = StrangersConfig
    config: StrangersConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        if self.config.unknown_age not in UNKNOWN_AGE_POLICIES:
            raise ValidationError(f"{self.name}.unknown_age",
                                  f"must be one of {', '.join(UNKNOWN_AGE_POLICIES)}, got {self.config.unknown_age!r}")

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        why = self._why(request, state)
        return FilterResult(list(cands), []) if why is None else _split(cands, why)

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        """What :meth:`apply` keeps, as a mask: the age test over the whole list (one lookup per distinct age
        group), then the friend / mutual friend / shared community tests of the candidates across ages at once
        (:meth:`~belong.state.relation.Relation.rows_meet`)."""
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE:
            return np.ones(items.size, bool)
        policy = self.config.unknown_age
        me_minor, me_adult = _minor_adult(p.age_group, policy)
        ages = state.users.age_group
        item_ages = [ages[i] for i in items.tolist()]
        across = {a: (me_minor and b_adult) or (me_adult and b_minor)
                  for a in set(item_ages) for b_minor, b_adult in (_minor_adult(a, policy),)}
        keep = np.fromiter((not across[a] for a in item_ages), bool, items.size)
        if keep.all():
            return keep
        mine_f = np.zeros(state.n_users, bool)
        mine_f[p.friends[p.friends < state.n_users]] = True
        mine_c = np.zeros(state.n_communities, bool)
        mine_c[p.communities[p.communities < state.n_communities]] = True
        across_at = np.flatnonzero(~keep)
        x = items[across_at]
        known = x < state.n_users
        keep[across_at] = ((known & mine_f[np.where(known, x, 0)]) | state.friends.rows_meet(x, mine_f)
                           | state.members.rows_meet(x, mine_c))  # a friend, a mutual friend, a shared community
        return keep

    def _why(self, request: Request, state: WorldState) -> Callable[[int], str | None] | None:
        """The rule per item (None: it removes nothing for this request)."""
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE:
            return None
        policy = self.config.unknown_age
        me_minor, me_adult = _minor_adult(p.age_group, policy)
        my_friends, my_comms = set(p.friends.tolist()), set(p.communities.tolist())

        def why(i: int) -> str | None:
            minor, adult = _minor_adult(state.users.age_group[i], policy)
            if not ((me_minor and adult) or (me_adult and minor)):
                return None
            if i in my_friends or my_friends.intersection(state.friends_of(i).tolist()):
                return None
            if my_comms.intersection(state.communities_of(i).tolist()):
                return None
            if me_minor and adult:
                return "an adult you share no friend or community with (you may be under 18)"
            return "a teen you share no friend or community with"

        return why


class PolicyConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    rules: list[str] = msgspec.field(default_factory=lambda: list(RULES))  # rules that apply on this surface, in order
    unknown_age: str = "strict"  # see ``strangers``


@register("filter", "safety_rules")
class SafetyRules(Filter):
    """A per-surface policy: the listed rules, each removal's reason prefixed with its rule's name."""

    Config = PolicyConfig
    config: PolicyConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        super().__init__(config)
        bad = [r for r in self.config.rules if r not in RULES]
        if bad:
            raise ValidationError(f"{self.name}.rules", f"unknown rule {bad[0]!r}; known: {', '.join(RULES)}")
        classes = {
            "self": shipped.SelfFilter, "already_connected": shipped.AlreadyConnectedFilter,
            "pending": PendingRequestFilter, "blocked": shipped.BlockedFilter, "inactive": shipped.InactiveFilter,
            "not_discoverable": shipped.NotDiscoverableFilter, "age_restricted": shipped.AgeRestrictedFilter,
        }
        self.rules: list[tuple[str, Filter]] = []
        for r in self.config.rules:
            if r == "strangers":
                self.rules.append((r, StrangersFilter(StrangersConfig(unknown_age=self.config.unknown_age))))
            else:
                self.rules.append((r, classes[r]()))

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        kept, removed = list(cands), list[tuple[Merged, str]]()
        for rule, f in self.rules:
            if not kept:
                break
            res = f.apply(request, state, kept)
            kept = res.kept
            removed.extend((m, f"{rule}: {why}") for m, why in res.removed)
        return FilterResult(kept, removed)

    def keep_mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray:
        """Every listed rule's keep mask, combined (a rule keeps or removes an item whatever the other candidates
        are, so this is what :meth:`apply` keeps); the rules without an array form run together on candidate
        objects built once."""
        keep = np.ones(items.size, bool)
        slow: list[Filter] = []
        for _, f in self.rules:
            m = f.mask(request, state, items)
            if m is None:
                slow.append(f)
            else:
                keep &= m
        if slow and keep.any():
            cands = [Merged(i) for i in items[keep].tolist()]
            for f in slow:
                cands = f.apply(request, state, cands).kept
            keep[keep] = np.isin(items[keep], np.fromiter((m.item for m in cands), np.int64, len(cands)))
        return keep

    def revision(self, request: Request, state: WorldState) -> Hashable | None:
        """Communities: the user's and the communities' change counters (:meth:`WorldState.rules_revision`) —
        the rules read the user's memberships, blocks and profile and the communities' attributes, nothing else.
        Other surfaces: None (their rules read other users' relations)."""
        if request.surface is not Surface.COMMUNITIES:
            return None
        return state.rules_revision(state.profile(request).idx)


def violations(request: Request, state: WorldState, items: np.ndarray, unknown_age: str = "strict") -> list[str]:
    """Independent check (for tests and audits): which shown ``items`` break a safety rule, as messages."""
    p = state.profile(request)
    out = []
    me = p.idx
    pending = state.pending_requests
    for i in np.asarray(items, np.int64).tolist():
        if request.surface is Surface.PEOPLE:
            if me is not None and (i == me or state.friends.has(me, i)):
                out.append(f"{i}: self or friend")
            if me is not None and (i in state.blocked_users.get(me, ()) or me in state.blocked_users.get(i, ())):
                out.append(f"{i}: blocked")
            if me is not None and (i in pending.get(me, ()) or me in pending.get(i, ())):
                out.append(f"{i}: pending")
            if state.users.status[i] != "active":
                out.append(f"{i}: inactive")
            a_minor, a_adult = _minor_adult(p.age_group, unknown_age)
            b_minor, b_adult = _minor_adult(state.users.age_group[i], unknown_age)
            if (a_minor and b_adult) or (a_adult and b_minor):
                fr = set(state.friends_of(i).tolist())
                if not (fr & set(p.friends.tolist())) and not (set(state.communities_of(i).tolist())
                                                                 & set(p.communities.tolist())):
                    out.append(f"{i}: stranger across ages")
            continue
        c = i if request.surface is Surface.COMMUNITIES else state.content.community[i]
        if request.surface is Surface.COMMUNITIES and me is not None and state.is_member(me, c):
            out.append(f"{i}: member")
        if me is not None and c in state.blocked_communities.get(me, ()):
            out.append(f"{i}: blocked community")
        if state.communities.age_restricted[c] and p.age_group != AgeGroup.ADULT:
            out.append(f"{i}: age-restricted")
        if state.communities.status[c] != "active":
            out.append(f"{i}: inactive")
        hidden = not state.communities.discoverable[c] or state.communities.invite_only[c]
        if request.surface is Surface.COMMUNITIES and hidden:
            out.append(f"{i}: undiscoverable")
    return out
