"""``WorldState``: the in-memory, indexed snapshot every pipeline component reads, and its incremental updates.

It holds the entity tables (:mod:`belong.state.ids`: ``state.communities.name[i]``), the relations
(:class:`~belong.state.relation.Relation`: memberships, symmetric friendships, content engagement), blocks and
pending friend requests, the decayed heat of communities and content (:mod:`belong.state.heat`) and time-stamped
facts for cuts and outcome labels (:mod:`belong.state.timeline`). It is built in bulk by
:mod:`belong.state.build`; :meth:`WorldState.apply` folds one new event in, so a join or a new friendship is
visible to the next request without a rebuild or a retrain.

**Caching convention.** Values derived from the state (community flags and terms, creation times as an array, the
requesting user's profile) are computed on first use and kept with the counter they were computed at
(:meth:`WorldState._derived`): ``c_rev`` for community-derived values, ``version`` for anything else. A changed
counter rebuilds the value on its next use; nothing is invalidated by hand.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp

from belong.domain import Community, EntityStatus, Event, EventType, User
from belong.errors import UnknownIdError
from belong.state.heat import DAY_US, HEAT_HALF_LIFE_DAYS, decay, heat, segment_keys
from belong.state.ids import Communities, Contents, Users
from belong.state.relation import Relation
from belong.state.timeline import ActivityLog, PairEvents

ACTIVITY_TYPES = frozenset({"join", "message", "reaction", "voice_minutes", "view"})
ENGAGE_TYPES = frozenset({"message", "reaction", "voice_minutes", "view", "click"})
T = TypeVar("T")


class NewUserFacts(Protocol):
    """What a brand-new user declared at sign-up (:class:`belong.pipeline.types.NewUser`)."""

    @property
    def locale(self) -> str: ...

    @property
    def age_group(self) -> Any: ...

    @property
    def interests(self) -> tuple[str, ...]: ...


class Asker(Protocol):
    """Who a request is for (:class:`belong.pipeline.types.Request`)."""

    @property
    def user_id(self) -> str: ...

    @property
    def new_user(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class CommunityTerms:
    """Per community (dense index): tag counts (``tags[c, tag_ids[t]]``) and locale codes (-1: undetermined)."""

    tags: sp.csr_matrix
    tag_ids: dict[str, int]
    locale: np.ndarray
    locale_ids: dict[str, int]


@dataclass(frozen=True, slots=True)
class CommunityFlags:
    """Per community (dense index): active, discoverable, invite-only, age-restricted."""

    active: np.ndarray
    discoverable: np.ndarray
    invite_only: np.ndarray
    age_restricted: np.ndarray


@dataclass(frozen=True, slots=True)
class Profile:
    """The user a request is about: dense index (None for a brand-new user), attributes and neighbourhoods."""

    idx: int | None
    id: str
    locale: str
    age_group: str
    interests: tuple[str, ...]
    communities: np.ndarray  # int64 community indices the user is a member of
    friends: np.ndarray  # int64 user indices

    @property
    def is_new(self) -> bool:
        return self.idx is None or (self.communities.size == 0 and self.friends.size == 0)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class WorldState:
    """Indexed snapshot of users, communities, content and their relations. See the module docstring."""

    def __init__(self, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> None:
        self.half_life_us = half_life_days * DAY_US
        self.users = Users()
        self.communities = Communities()
        self.content = Contents()
        self.now_us = 0
        # relations
        self.members = Relation.empty()
        self.friends = Relation.empty(symmetric=True)
        self.engaged = Relation.empty()
        self.blocked_users: dict[int, set[int]] = defaultdict(set)
        self.blocked_communities: dict[int, set[int]] = defaultdict(set)
        #: requester -> users with a friend request from them still unanswered (no accept/remove/block since)
        self.pending_requests: dict[int, set[int]] = defaultdict(set)
        #: decayed activity: key "all", "locale:xx", "age:teen" -> array over communities / content
        self.community_heat: dict[str, np.ndarray] = {}
        self.content_heat: dict[str, np.ndarray] = {}
        #: bumped by every change
        self.version = 0
        #: per user, a counter bumped by every change to what the user did, declared or had done to them (their
        #: events, their profile, friend requests / friendships / blocks aimed at them); with ``c_rev`` (bumped by
        #: every community change) it keys answers that depend on nothing else
        self.user_rev: defaultdict[int, int] = defaultdict(int)
        self.c_rev = 0
        #: per community, a counter bumped by every join and leave of it (its member count changed)
        self.members_rev: defaultdict[int, int] = defaultdict(int)
        # time-stamped facts (see belong.state.timeline)
        self.join_ts = sp.csr_matrix((0, 0), dtype=np.int64)  # join time of each base membership
        self._join_ts_live: dict[tuple[int, int], int] = {}  # joins folded in by apply()
        self.join_events: PairEvents | None = None
        self.leave_events: PairEvents | None = None
        self.community_reports: PairEvents | None = None
        self.activity_log: ActivityLog | None = None
        #: what the state was built from (a ``World`` or ``Interactions``): the point-in-time cut
        #: (:func:`belong.state.cut.as_of`) rebuilds from it; None once released (:meth:`release_source`)
        self.source: object | None = None
        self._cache: dict[str, tuple[Any, Any]] = {}

    # ------------------------------------------------------------------------------------------- caching
    def _derived(self, name: str, key: Any, build: Callable[[], T]) -> T:
        """The value ``name`` computed at ``key`` (a counter, or a tuple of them), rebuilt when the key changed."""
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = build()
        self._cache[name] = (key, value)
        return value

    def release_source(self) -> None:
        """Forget the source data (serving keeps no event table in memory; a cut then needs a rebuild)."""
        self.source = None

    # ------------------------------------------------------------------------------------------- entities
    def add_user(self, user: User) -> int:
        i = self.users.put(user)
        self.version += 1
        self.user_rev[i] += 1
        return i

    def add_community(self, c: Community) -> int:
        known = c.id in self.communities.index
        i = self.communities.put(c)
        if not known:
            for h in self.community_heat.values():
                h.resize(len(self.communities), refcheck=False)
        self.version += 1
        self.c_rev += 1
        return i

    def add_content(self, ident: str, community: int, kind: str, created: int, text: str, status: str) -> int:
        i, new = self.content.put(ident, community, kind, created, text, status)
        if new:
            for h in self.content_heat.values():
                h.resize(len(self.content), refcheck=False)
        return i

    def ensure_user(self, uid: str, ts_us: int) -> int:
        """The index of ``uid``, registering an unknown id as a user created at ``ts_us``."""
        i = self.users.index.get(uid)
        return i if i is not None else self.add_user(User(id=uid, created_at_us=ts_us))

    def ensure_community(self, cid: str, ts_us: int) -> int:
        """The index of ``cid``, registering an unknown id as a community (named by its id) created at ``ts_us``."""
        i = self.communities.index.get(cid)
        return i if i is not None else self.add_community(Community(id=cid, name=cid, created_at_us=ts_us))

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_communities(self) -> int:
        return len(self.communities)

    @property
    def n_content(self) -> int:
        return len(self.content)

    # ------------------------------------------------------------------------------------------- reads
    def communities_of(self, u: int) -> np.ndarray:
        return self.members.row(u)

    def members_of(self, c: int) -> np.ndarray:
        return self.members.col(c)

    def member_counts(self, communities: np.ndarray) -> np.ndarray:
        """Members of each of ``communities`` (live), without building their member lists."""
        return self.members.col_sizes(communities)

    def friends_of(self, u: int) -> np.ndarray:
        return self.friends.row(u)

    def is_member(self, u: int, c: int) -> bool:
        return self.members.has(u, c)

    def has_pending(self, a: int, b: int) -> bool:
        """A friend request between ``a`` and ``b`` (either direction) is waiting for an answer."""
        return b in self.pending_requests.get(a, ()) or a in self.pending_requests.get(b, ())

    def membership_csr(self) -> sp.csr_matrix:
        """users x communities, 0/1, base + edits."""
        return self.members.matrix((self.n_users, self.n_communities))

    def friend_csr(self) -> sp.csr_matrix:
        """Symmetric users x users friendship matrix, 0/1."""
        return self.friends.matrix((self.n_users, self.n_users))

    def engagement_csr(self) -> sp.csr_matrix:
        return self.engaged.matrix((self.n_users, self.n_content))

    def membership_since(self) -> sp.csr_matrix:
        """users x communities, int64: the join time (us) of every current membership, with exactly the sparsity
        (and index order) of :meth:`membership_csr`; 0 where the time is unknown. Explicit entries: do not
        ``eliminate_zeros`` it."""
        M = self.membership_csr()
        M.sort_indices()
        ncol = max(M.shape[1], 1)
        rows = np.repeat(np.arange(M.shape[0], dtype=np.int64), np.diff(M.indptr))
        keys = rows * ncol + M.indices.astype(np.int64)
        J = self.join_ts.tocoo()
        jkeys = J.row.astype(np.int64) * ncol + J.col.astype(np.int64)
        order = np.argsort(jkeys, kind="stable")
        jk, jv = jkeys[order], np.asarray(J.data, np.int64)[order]
        out = np.zeros(keys.size, np.int64)
        if jk.size:
            pos = np.minimum(np.searchsorted(jk, keys), jk.size - 1)
            hit = jk[pos] == keys
            out[hit] = jv[pos[hit]]
        for (u, c), t in self._join_ts_live.items():
            lo, hi = M.indptr[u], M.indptr[u + 1]
            j = lo + int(np.searchsorted(M.indices[lo:hi], c))
            if j < hi and M.indices[j] == c:
                out[j] = t
        return sp.csr_matrix((out, M.indices.copy(), M.indptr.copy()), shape=M.shape)

    def community_active(self) -> np.ndarray:
        return np.array([s == EntityStatus.ACTIVE for s in self.communities.status], bool)

    def created_array(self) -> np.ndarray:
        """Community creation times as a read-only array."""
        return self._derived("created", self.c_rev,
                             lambda: _readonly(np.asarray(self.communities.created, np.int64)))

    def user_locales(self) -> tuple[np.ndarray, dict[str, int]]:
        """Every user's declared language as a read-only int32 code (and the codes): what compares a language with
        a million people's at once. Extended as users arrive; rebuilt when a known user's attributes change."""
        u = self.users
        hit = self._cache.get("locales")
        if hit is not None and hit[0] == (id(u.locale), u.rev) and hit[1][0].size <= len(u):
            codes, ids = hit[1]
            if codes.size == len(u):
                return codes, ids
            more = np.array([ids.setdefault(x, len(ids)) for x in u.locale[codes.size:]], np.int32)
        else:
            codes, ids = np.empty(0, np.int32), {}
            more = np.array([ids.setdefault(x, len(ids)) for x in u.locale], np.int32)
        out = (_readonly(np.concatenate([codes, more])), ids)
        self._cache["locales"] = ((id(u.locale), u.rev), out)
        return out

    def rules_revision(self, user: int | None) -> tuple[int, int]:
        """What the communities rules of ``user`` read, as counters: unchanged counters mean an unchanged answer."""
        return (self.user_rev.get(user, 0) if user is not None else 0), self.c_rev

    def community_terms(self) -> CommunityTerms:
        """Tags (community x tag counts) and locales (codes) as arrays."""
        return self._derived("terms", self.c_rev, self._community_terms)

    def _community_terms(self) -> CommunityTerms:
        tag_ids: dict[str, int] = {}
        rows, cols = [], []
        for c, tags in enumerate(self.communities.tags):
            for t in tags:
                rows.append(c)
                cols.append(tag_ids.setdefault(t, len(tag_ids)))
        tags_m = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)),
                               shape=(self.n_communities, max(len(tag_ids), 1)))
        tags_m.sum_duplicates()
        locale_ids: dict[str, int] = {}
        locale = np.array([-1 if loc in ("", "und") else locale_ids.setdefault(loc, len(locale_ids))
                           for loc in self.communities.locale], np.int64)
        return CommunityTerms(tags_m, tag_ids, locale, locale_ids)

    def community_flags(self) -> CommunityFlags:
        """The rule-relevant community attributes as read-only boolean arrays: what the safety rules test over a
        whole candidate list at once."""
        c = self.communities
        return self._derived("flags", self.c_rev, lambda: CommunityFlags(
            _readonly(self.community_active()), _readonly(np.array(c.discoverable, bool)),
            _readonly(np.array(c.invite_only, bool)), _readonly(np.array(c.age_restricted, bool))))

    def profile(self, request: Asker) -> Profile:
        """Resolve the request's user. Unknown ids raise :class:`UnknownIdError` unless the request carries
        ``new_user`` (then: a brand-new user with no history, described by the sign-up facts).

        Kept for the request (held, so compared by identity) and the state version, by the caching convention (written
        out here: every component of a request calls this)."""
        hit = self._cache.get("profile")
        if hit is not None and hit[0][0] is request and hit[0][1] == self.version:
            return hit[1]
        out = self._profile(request)
        self._cache["profile"] = ((request, self.version), out)
        return out

    def _profile(self, request: Asker) -> Profile:
        u = self.users.index.get(request.user_id)
        if u is None:
            if request.new_user is None:
                raise UnknownIdError("user", request.user_id)
            nu: NewUserFacts = request.new_user
            empty = np.empty(0, np.int64)
            return Profile(None, request.user_id, nu.locale, str(nu.age_group), tuple(nu.interests), empty, empty)
        users = self.users
        return Profile(u, request.user_id, users.locale[u], users.age_group[u], users.interests[u],
                       self.communities_of(u), self.friends_of(u))

    def segments(self, profile: Profile) -> list[str]:
        """Heat keys that describe this user, most specific first."""
        return segment_keys(profile.locale, profile.age_group)

    def decay(self, ts: np.ndarray) -> np.ndarray:
        """The heat factor of events at ``ts`` now."""
        return decay(ts, self.now_us, self.half_life_us)

    def heat(self, target: np.ndarray, actor: np.ndarray, weight: np.ndarray, n: int) -> dict[str, np.ndarray]:
        """Heat of ``n`` items from weighted events (see :func:`belong.state.heat.heat`), segmented by the actors."""
        return heat(target, actor, weight, n, self.users.locale, self.users.age_group)

    def community_heat_as_of(self, ts_us: int) -> dict[str, np.ndarray]:
        """``community_heat`` as it was at ``ts_us``: activity strictly before it, decayed to it. Without an
        activity log (a state built by hand) the current heat is returned."""
        log = self.activity_log
        if log is None:
            return self.community_heat
        m = log.ts < ts_us
        w = log.weight[m] * decay(log.ts[m], ts_us, self.half_life_us)
        return self.heat(log.community[m], log.user[m], w, self.n_communities)

    # ------------------------------------------------------------------------------------------- updates
    def apply(self, event: Event) -> None:
        """Fold one event in: memberships, friendships, blocks and heat change at once (no rebuild)."""
        u = self.ensure_user(event.actor, event.ts_us)
        kind = event.target_kind.value
        et = event.type
        if et in (EventType.JOIN, EventType.LEAVE):
            c = self.ensure_community(event.target, event.ts_us)
            if self.members.set(u, c, et is EventType.JOIN):
                self.members_rev[c] += 1
                if et is EventType.JOIN:
                    self._join_ts_live[(u, c)] = event.ts_us
        elif et is EventType.FRIEND_REQUEST:
            v = self.ensure_user(event.target, event.ts_us)
            if not self.friends.has(u, v):
                self.pending_requests[u].add(v)
            self.user_rev[v] += 1  # done to them: counts as a change of theirs too
        elif et in (EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE):
            v = self.ensure_user(event.target, event.ts_us)
            self.friends.set(u, v, et is EventType.FRIEND_ACCEPT)
            self._clear_pending(u, v)
            self.user_rev[v] += 1
        elif et is EventType.BLOCK:
            if kind == "user":
                v = self.ensure_user(event.target, event.ts_us)
                self.blocked_users[u].add(v)
                self._clear_pending(u, v)
                self.user_rev[v] += 1
            else:
                self.blocked_communities[u].add(self.ensure_community(event.target, event.ts_us))
        if et.value in ACTIVITY_TYPES and kind == "community":
            self._bump(self.community_heat, self.ensure_community(event.target, event.ts_us), u, event)
        elif et.value in ENGAGE_TYPES and kind == "content":
            x = self.content.index.get(event.target)
            if x is not None:
                self.engaged.set(u, x, True)
                self._bump(self.content_heat, x, u, event)
        self.version += 1
        self.user_rev[u] += 1

    def _clear_pending(self, a: int, b: int) -> None:
        self.pending_requests.get(a, set()).discard(b)
        self.pending_requests.get(b, set()).discard(a)

    def _bump(self, heat: dict[str, np.ndarray], j: int, u: int, event: Event) -> None:
        w = float(np.log1p(event.value) * self.decay(np.array([event.ts_us]))[0])
        for key in ("all", f"locale:{self.users.locale[u]}", f"age:{self.users.age_group[u]}"):
            if key == "all" or not key.endswith((":und", ":unknown")):
                arr = heat.setdefault(key, np.zeros(len(heat.get("all", ())), np.float64))
                if j < arr.size:
                    arr[j] += w
