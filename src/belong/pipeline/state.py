"""``WorldState``: the in-memory, indexed snapshot every pipeline component reads.

Built from a :class:`~belong.datasets.World`, an event store or (for offline evaluation) an
:class:`~belong.interactions.Interactions`. It holds

* id maps for users, communities and content (external id <-> dense index);
* memberships (``join`` minus a later ``leave``) as a user x community CSR, friendships (``friend_accept`` minus a
  later ``friend_remove``) as a symmetric user x user CSR, content engagement as a user x content CSR;
* blocks (user -> user, user -> community), user and community attributes;
* time-decayed activity ("heat") of communities and content, overall and per locale / age group, for trending;
* time-stamped facts for point-in-time cuts (the ranker's temporal validation cut, :mod:`belong.ranking.dataset`):
  when each membership began (:meth:`WorldState.membership_since`), ``join`` and ``leave`` events and reports of
  communities (:class:`PairEvents`; ``None`` when the source has no such information: :class:`Interactions` give
  joins only), and the raw community activity behind the heat (:meth:`WorldState.community_heat_as_of`).

:meth:`WorldState.apply` folds one new event in incrementally: memberships and friendships live in a small overlay
on top of the CSR base, so a join or a new friendship is visible to the next request without a rebuild or a
retrain. :meth:`membership_csr` / :meth:`friend_csr` materialise base + overlay when a model needs a matrix.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from belong.domain import AgeGroup, Community, EntityStatus, Event, EventType, User
from belong.errors import UnknownIdError
from belong.interactions import Interactions
from belong.pipeline.types import Request

DAY_US = 86_400_000_000
HEAT_HALF_LIFE_DAYS = 7.0
ACTIVITY_TYPES = frozenset({"join", "message", "reaction", "voice_minutes", "view"})
ENGAGE_TYPES = frozenset({"message", "reaction", "voice_minutes", "view", "click"})


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
class PairEvents:
    """(user index, community index, time) of one kind of event, in time order (e.g. leaves, reports)."""

    user: np.ndarray  # int64
    community: np.ndarray  # int64
    ts: np.ndarray  # int64 microseconds

    def __len__(self) -> int:
        return int(self.ts.size)


@dataclass(frozen=True, slots=True)
class ActivityLog:
    """The community activity behind ``community_heat``: community, user, weight before decay, time."""

    community: np.ndarray  # int64
    user: np.ndarray  # int64
    weight: np.ndarray  # float64
    ts: np.ndarray  # int64 microseconds


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


class IdMap:
    """External id <-> dense index, growable."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids: list[str] = [str(i) for i in ids]
        self.index: dict[str, int] = {s: i for i, s in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, ident: str, kind: str) -> int:
        try:
            return self.index[ident]
        except KeyError:
            raise UnknownIdError(kind, ident) from None

    def add(self, ident: str) -> int:
        i = self.index.get(ident)
        if i is None:
            i = self.index[ident] = len(self.ids)
            self.ids.append(ident)
        return i


class _Overlay:
    """Incremental edits of a sparse 0/1 relation on top of a CSR base (rows) and its transpose (columns)."""

    def __init__(self, base: sp.csr_matrix, symmetric: bool = False) -> None:
        self.base = base.tocsr().astype(np.float32)
        self.base.sort_indices()
        self.base_t = self.base if symmetric else self.base.T.tocsr()
        self.symmetric = symmetric
        # int64 copies of the index arrays, read-only: a row is then a view, not a converted copy per call
        self._r = self._index(self.base)
        self._c = self._r if symmetric else self._index(self.base_t)
        self.add_r: dict[int, set[int]] = defaultdict(set)
        self.del_r: dict[int, set[int]] = defaultdict(set)
        self.add_c: dict[int, set[int]] = defaultdict(set)
        self.del_c: dict[int, set[int]] = defaultdict(set)
        self.version = 0

    @staticmethod
    def _index(m: sp.csr_matrix) -> tuple[list[int], np.ndarray]:
        idx = m.indices.astype(np.int64)
        idx.flags.writeable = False
        return m.indptr.tolist(), idx

    _EMPTY = np.empty(0, np.int64)

    @staticmethod
    def _row(ix: tuple[list[int], np.ndarray], i: int) -> np.ndarray:
        """Row ``i`` of a base index (a read-only view; empty beyond the base's rows)."""
        indptr, idx = ix
        if i + 1 >= len(indptr):
            return _Overlay._EMPTY
        return idx[indptr[i]:indptr[i + 1]]

    def _merge(self, base: np.ndarray, add: set[int] | None, rem: set[int] | None) -> np.ndarray:
        if not add and not rem:
            return base
        out = set(base.tolist()) - (rem or set()) | (add or set())
        return np.array(sorted(out), np.int64)

    def row(self, i: int) -> np.ndarray:
        return self._merge(self._row(self._r, i), self.add_r.get(i), self.del_r.get(i))

    def col(self, j: int) -> np.ndarray:
        if self.symmetric:
            return self.row(j)
        return self._merge(self._row(self._c, j), self.add_c.get(j), self.del_c.get(j))

    def col_sizes(self, js: np.ndarray) -> np.ndarray:
        """``col(j).size`` for every ``j`` at once: the base's counts, exact for columns the overlay edited."""
        counts = getattr(self, "_col_counts", None)
        if counts is None:
            counts = self._col_counts = np.diff(np.asarray(self._c[0], np.int64))
        js = np.asarray(js, np.int64)
        out = np.zeros(js.size, np.int64)
        inside = js < counts.size
        out[inside] = counts[js[inside]]
        add, rem = (self.add_r, self.del_r) if self.symmetric else (self.add_c, self.del_c)
        if add or rem:
            for k, j in enumerate(js.tolist()):
                if add.get(j) or rem.get(j):
                    out[k] = self.col(j).size
        return out

    def has(self, i: int, j: int) -> bool:
        if j in self.add_r.get(i, ()):
            return True
        if j in self.del_r.get(i, ()):
            return False
        r = self._row(self._r, i)
        pos = np.searchsorted(r, j)
        return bool(pos < r.size and r[pos] == j)

    def _set(self, i: int, j: int, on: bool) -> None:
        (self.add_r if on else self.del_r)[i].add(j)
        (self.del_r if on else self.add_r)[i].discard(j)
        if not self.symmetric:
            (self.add_c if on else self.del_c)[j].add(i)
            (self.del_c if on else self.add_c)[j].discard(i)

    def set(self, i: int, j: int, on: bool) -> bool:
        """Turn (i, j) on/off; returns whether anything changed."""
        if self.has(i, j) == on:
            return False
        self._set(i, j, on)
        if self.symmetric:
            self._set(j, i, on)
        self.version += 1
        return True

    def matrix(self, shape: tuple[int, int]) -> sp.csr_matrix:
        """A fresh CSR of base + overlay, grown to ``shape``."""
        base = self.base
        if base.shape != shape:
            base = sp.csr_matrix((base.data, base.indices, np.pad(base.indptr, (0, shape[0] - base.shape[0]), mode="edge")), shape=shape)
        if not any(self.add_r.values()) and not any(self.del_r.values()):
            return base.copy()  # callers may modify their matrix in place
        lil = base.tolil()
        for i, js in self.add_r.items():
            for j in js:
                lil[i, j] = 1.0
        for i, js in self.del_r.items():
            for j in js:
                lil[i, j] = 0.0
        out = lil.tocsr()
        out.eliminate_zeros()
        return out


def _last_state(a: np.ndarray, b: np.ndarray, on: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a, b) whose last event (input is in time order) turned the relation on."""
    if a.size == 0:
        return a, b
    df = pd.DataFrame({"a": a, "b": b, "on": on}).drop_duplicates(["a", "b"], keep="last")
    df = df[df["on"]]
    return df["a"].to_numpy(np.int64), df["b"].to_numpy(np.int64)


def _last_state_ts(a: np.ndarray, b: np.ndarray, on: np.ndarray, ts: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_last_state` plus the time of each surviving pair's last event (the join that began it)."""
    if a.size == 0:
        return a, b, ts.astype(np.int64)
    df = pd.DataFrame({"a": a, "b": b, "on": on, "ts": ts}).drop_duplicates(["a", "b"], keep="last")
    df = df[df["on"]]
    return df["a"].to_numpy(np.int64), df["b"].to_numpy(np.int64), df["ts"].to_numpy(np.int64)


def _ts_csr(rows: np.ndarray, cols: np.ndarray, ts: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """users x communities int64 CSR of times; duplicate pairs keep their earliest time."""
    rows, cols, ts = (np.asarray(x, np.int64) for x in (rows, cols, ts))
    if rows.size:
        key = rows * max(shape[1], 1) + cols
        order = np.lexsort((ts, key))
        first = np.r_[True, key[order][1:] != key[order][:-1]]
        rows, cols, ts = rows[order][first], cols[order][first], ts[order][first]
    m = sp.csr_matrix((ts, (rows, cols)), shape=shape, dtype=np.int64)
    m.sort_indices()
    return m


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


class WorldState:
    """Indexed snapshot of users, communities, content and their relations. See the module docstring."""

    def __init__(self, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> None:
        self.half_life_us = half_life_days * DAY_US
        self.users = IdMap()
        self.communities = IdMap()
        self.content = IdMap()
        self.now_us = 0
        # user attributes
        self.user_locale: list[str] = []
        self.user_age: list[str] = []
        self.user_interests: list[tuple[str, ...]] = []
        self.user_created: list[int] = []
        self.user_status: list[str] = []
        # community attributes
        self.c_name: list[str] = []
        self.c_description: list[str] = []
        self.c_tags: list[tuple[str, ...]] = []
        self.c_locale: list[str] = []
        self.c_age_restricted: list[bool] = []
        self.c_discoverable: list[bool] = []
        self.c_invite_only: list[bool] = []
        self.c_status: list[str] = []
        self.c_created: list[int] = []
        # content attributes
        self.x_community: list[int] = []
        self.x_text: list[str] = []
        self.x_kind: list[str] = []
        self.x_created: list[int] = []
        self.x_status: list[str] = []
        # relations
        self.members = _Overlay(sp.csr_matrix((0, 0), dtype=np.float32))
        self.friends = _Overlay(sp.csr_matrix((0, 0), dtype=np.float32), symmetric=True)
        self.engaged = _Overlay(sp.csr_matrix((0, 0), dtype=np.float32))
        self.blocked_users: dict[int, set[int]] = defaultdict(set)
        self.blocked_communities: dict[int, set[int]] = defaultdict(set)
        #: requester -> users with a friend request from them still unanswered (no accept/remove/block since)
        self.pending_requests: dict[int, set[int]] = defaultdict(set)
        # decayed activity: key "all", "locale:xx", "age:teen" -> array over communities / content
        self.community_heat: dict[str, np.ndarray] = {}
        self.content_heat: dict[str, np.ndarray] = {}
        self.version = 0
        self._profile_cache: tuple[Request, int, Profile] | None = None
        #: per user, a counter bumped by every change to what the user did, declared or had done to them (their
        #: events, their profile, friend requests / friendships / blocks aimed at them); with ``c_rev`` (bumped by
        #: every community change) it keys answers that depend on nothing else
        self.user_rev: defaultdict[int, int] = defaultdict(int)
        self.c_rev = 0
        #: per community, a counter bumped by every join and leave of it (its member count changed)
        self.members_rev: defaultdict[int, int] = defaultdict(int)
        # time-stamped facts for point-in-time cuts (see the module docstring)
        self.join_ts = sp.csr_matrix((0, 0), dtype=np.int64)  # join time of each base membership
        self._join_ts_live: dict[tuple[int, int], int] = {}  # joins folded in by apply()
        self.join_events: PairEvents | None = None
        self.leave_events: PairEvents | None = None
        self.community_reports: PairEvents | None = None
        self.activity_log: ActivityLog | None = None

    # ------------------------------------------------------------------------------------------- entities
    def add_user(self, user: User) -> int:
        i = self.users.index.get(user.id)
        if i is None:
            i = self.users.add(user.id)
            self.user_locale.append(user.locale)
            self.user_age.append(str(user.age_group))
            self.user_interests.append(tuple(user.interests))
            self.user_created.append(user.created_at_us)
            self.user_status.append(str(user.status))
        else:
            self.user_locale[i], self.user_age[i] = user.locale, str(user.age_group)
            self.user_interests[i], self.user_status[i] = tuple(user.interests), str(user.status)
        self.version += 1
        self.user_rev[i] += 1
        return i

    def add_community(self, c: Community) -> int:
        i = self.communities.index.get(c.id)
        values = (c.name, c.description, tuple(c.tags), c.locale, c.is_age_restricted, c.discoverable,
                  c.invite_only, str(c.status), c.created_at_us)
        cols = (self.c_name, self.c_description, self.c_tags, self.c_locale, self.c_age_restricted,
                self.c_discoverable, self.c_invite_only, self.c_status, self.c_created)
        if i is None:
            i = self.communities.add(c.id)
            for col, v in zip(cols, values, strict=True):
                col.append(v)
            for heat in self.community_heat.values():
                heat.resize(len(self.communities), refcheck=False)
        else:
            for col, v in zip(cols, values, strict=True):
                col[i] = v
        self.version += 1
        self.c_rev += 1
        self._c_attrs = self._c_terms = None  # community_flags() / community_terms() are rebuilt on next use
        return i

    def _ensure_user(self, uid: str, ts_us: int) -> int:
        i = self.users.index.get(uid)
        return i if i is not None else self.add_user(User(id=uid, created_at_us=ts_us))

    def _ensure_community(self, cid: str, ts_us: int) -> int:
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

    def membership_csr(self) -> sp.csr_matrix:
        """users x communities, 0/1, base + overlay."""
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

    def community_heat_as_of(self, ts_us: int) -> dict[str, np.ndarray]:
        """``community_heat`` as it was at ``ts_us``: activity strictly before it, decayed to it (keys as in
        ``community_heat``). Without an activity log (a state built by hand) the current heat is returned."""
        log = self.activity_log
        if log is None:
            return self.community_heat
        m = log.ts < ts_us
        w = log.weight[m] * np.exp2(np.clip((log.ts[m] - ts_us) / self.half_life_us, -60, 30))
        return self._heat(log.community[m], log.user[m], w, self.n_communities)

    def community_active(self) -> np.ndarray:
        return np.array([s == EntityStatus.ACTIVE for s in self.c_status], bool)

    def created_array(self) -> np.ndarray:
        """Community creation times as an array (read-only), rebuilt only after a community change (or for a copy
        that was given its own list, as a time cut is)."""
        key = (id(self.c_created), self.c_rev)
        cached = getattr(self, "_c_created", None)
        if cached is None or cached[0] != key:
            arr = np.asarray(self.c_created, np.int64)
            arr.flags.writeable = False
            cached = self._c_created = (key, arr)
        return cached[1]

    def rules_revision(self, user: int | None) -> tuple[int, int]:
        """What the communities rules of ``user`` read, as counters: unchanged counters mean an unchanged answer."""
        return (self.user_rev.get(user, 0) if user is not None else 0), self.c_rev

    def community_terms(self) -> CommunityTerms:
        """Tags (community x tag counts) and locales (codes) as arrays, rebuilt after any community changes."""
        terms = getattr(self, "_c_terms", None)
        if terms is None or terms.locale.size != self.n_communities:
            tag_ids: dict[str, int] = {}
            rows, cols = [], []
            for c, tags in enumerate(self.c_tags):
                for t in tags:
                    rows.append(c)
                    cols.append(tag_ids.setdefault(t, len(tag_ids)))
            tags_m = sp.csr_matrix((np.ones(len(rows), np.float64), (rows, cols)),
                                   shape=(self.n_communities, max(len(tag_ids), 1)))
            tags_m.sum_duplicates()
            locale_ids: dict[str, int] = {}
            locale = np.array([-1 if loc in ("", "und") else locale_ids.setdefault(loc, len(locale_ids))
                               for loc in self.c_locale], np.int64)
            terms = self._c_terms = CommunityTerms(tags_m, tag_ids, locale, locale_ids)
        return terms

    def community_flags(self) -> CommunityFlags:
        """The rule-relevant community attributes as boolean arrays (read-only, rebuilt after any community
        changes): what the safety rules test over a whole candidate list at once."""
        flags = getattr(self, "_c_attrs", None)
        if flags is None or flags.active.size != self.n_communities:
            flags = CommunityFlags(self.community_active(), np.array(self.c_discoverable, bool),
                                   np.array(self.c_invite_only, bool), np.array(self.c_age_restricted, bool))
            for a in (flags.active, flags.discoverable, flags.invite_only, flags.age_restricted):
                a.flags.writeable = False
            self._c_attrs = flags
        return flags

    def profile(self, request: Request) -> Profile:
        """Resolve the request's user. Unknown ids raise :class:`UnknownIdError` unless the request carries
        ``new_user`` (then: a brand-new user with no history, described by the sign-up facts).

        The last answer is cached (per request object and state version): every component of one request
        calls this."""
        cached = self._profile_cache
        if cached is not None and cached[0] is request and cached[1] == self.version:
            return cached[2]
        out = self._profile(request)
        self._profile_cache = (request, self.version, out)
        return out

    def _profile(self, request: Request) -> Profile:
        u = self.users.index.get(request.user_id)
        if u is None:
            if request.new_user is None:
                raise UnknownIdError("user", request.user_id)
            nu = request.new_user
            empty = np.empty(0, np.int64)
            return Profile(None, request.user_id, nu.locale, str(nu.age_group), tuple(nu.interests), empty, empty)
        return Profile(
            u, request.user_id, self.user_locale[u], self.user_age[u], self.user_interests[u],
            self.communities_of(u), self.friends_of(u),
        )

    def segments(self, profile: Profile) -> list[str]:
        """Heat keys that describe this user, most specific first."""
        out = []
        if profile.locale and profile.locale != "und":
            out.append(f"locale:{profile.locale}")
        if profile.age_group != AgeGroup.UNKNOWN:
            out.append(f"age:{profile.age_group}")
        return out

    # ------------------------------------------------------------------------------------------- building
    def _decay(self, ts: np.ndarray) -> np.ndarray:
        return np.exp2(np.clip((ts - self.now_us) / self.half_life_us, -60, 30))

    def _heat(self, target: np.ndarray, actor: np.ndarray, weight: np.ndarray, n: int) -> dict[str, np.ndarray]:
        out = {"all": np.bincount(target, weights=weight, minlength=n)}
        for attr, key in ((self.user_locale, "locale"), (self.user_age, "age")):
            values, per_user = np.unique(np.asarray(attr, dtype=object).astype(str), return_inverse=True)
            codes = per_user[actor]
            for code, value in enumerate(values.tolist()):
                if value in ("und", "unknown"):
                    continue
                m = codes == code
                if m.any():
                    out[f"{key}:{value}"] = np.bincount(target[m], weights=weight[m], minlength=n)
        return out

    @classmethod
    def from_world(cls, world: object, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
        """Build from a :class:`belong.datasets.World` (entity tables + event table)."""
        st = cls(half_life_days=half_life_days)
        st._fill_world(world, world.events)  # type: ignore[attr-defined]
        return st

    @classmethod
    def from_world_as_of(cls, world: object, before_us: int, *, user_ids: Iterable[str] = (),
                         community_ids: Iterable[str] = (), half_life_days: float = HEAT_HALF_LIFE_DAYS
                         ) -> WorldState:
        """The world as it was just before ``before_us``: only events with ``ts < before_us`` (memberships,
        friendships, blocks, heat, leaves and reports as of then; ``now_us`` is the last of them) and the entities
        created before it. ``user_ids`` / ``community_ids`` are registered first, in order, so that their dense
        indices are ``0..n-1`` — offline evaluation on a store passes the training :class:`Interactions`' id maps
        so that the pipeline's indices are the harness's."""
        st = cls(half_life_days=half_life_days)
        for u in user_ids:
            st._ensure_user(str(u), 0)
        for c in community_ids:
            st._ensure_community(str(c), 0)
        events: pa.Table = world.events  # type: ignore[attr-defined]
        events = events.filter(pc.less(events.column("ts_us"), int(before_us)))
        st._fill_world(world, events, before_us=int(before_us))
        return st

    def _fill_world(self, world: object, events: pa.Table, before_us: int | None = None) -> None:
        """Entity tables (those created before ``before_us``, when given, and every id registered already), then
        ``events``."""
        st = self
        users: pa.Table = world.users  # type: ignore[attr-defined]
        comms: pa.Table = world.communities  # type: ignore[attr-defined]
        content: pa.Table = world.content  # type: ignore[attr-defined]

        def exists(r: dict, index: dict[str, int]) -> bool:
            return before_us is None or r["created_at_us"] < before_us or r["id"] in index

        for r in users.to_pylist():
            if not exists(r, st.users.index):
                continue
            known = before_us is not None and r["id"] in st.users.index  # registered with a placeholder time
            i = st.add_user(User(id=r["id"], created_at_us=r["created_at_us"], age_group=AgeGroup(r["age_group"]),
                                 locale=r["locale"], interests=tuple(r["interests"] or ()),
                                 status=EntityStatus(r["status"])))
            if known:
                st.user_created[i] = r["created_at_us"]
        for r in comms.to_pylist():
            if not exists(r, st.communities.index):
                continue
            st.add_community(Community(
                id=r["id"], name=r["name"], created_at_us=r["created_at_us"], description=r["description"] or "",
                tags=tuple(r["tags"] or ()), locale=r["locale"], is_age_restricted=r["is_age_restricted"],
                discoverable=r["discoverable"], invite_only=r["invite_only"], status=EntityStatus(r["status"])))
        for r in content.to_pylist():
            if before_us is not None and r["created_at_us"] >= before_us:
                continue
            st._add_content(r["id"], st._ensure_community(r["community_id"], r["created_at_us"]), r["kind"],
                            r["created_at_us"], r["text"] or "", r["status"])
        st._load_events(events)

    @staticmethod
    def _lookup(ids: IdMap, values: pa.Array, ts: np.ndarray, ensure) -> np.ndarray:
        """Dense indices of ``values``; unknown ids are added (in order of first appearance) via ``ensure``,
        or map to -1 when ``ensure`` is None."""
        if len(values) == 0:
            return np.empty(0, np.int64)

        def find() -> np.ndarray:
            if not len(ids):
                return np.full(len(values), -1, np.int64)
            found = pc.index_in(values, value_set=pa.array(ids.ids, pa.string()))
            return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

        idx = find()
        miss = np.flatnonzero(idx < 0)
        if miss.size and ensure is not None:
            missing = values.take(pa.array(miss)).to_numpy(zero_copy_only=False)
            uniq, first = np.unique(missing, return_index=True)
            order = np.argsort(first, kind="stable")
            for v, t in zip(uniq[order].tolist(), ts[miss][first[order]].tolist(), strict=True):
                ensure(v, int(t))
            idx = find()
        return idx

    def _add_content(self, xid: str, c: int, kind: str, created: int, text: str, status: str) -> int:
        i = self.content.index.get(xid)
        if i is None:
            i = self.content.add(xid)
            self.x_community.append(c)
            self.x_kind.append(kind)
            self.x_created.append(created)
            self.x_text.append(text)
            self.x_status.append(status)
            for heat in self.content_heat.values():
                heat.resize(len(self.content), refcheck=False)
        return i

    def _load_events(self, events: pa.Table) -> None:
        events = events.take(pc.sort_indices(events, [("ts_us", "ascending")]))  # stable: ties keep log order
        ts = events.column("ts_us").to_numpy().astype(np.int64)
        value = events.column("value").to_numpy().astype(np.float64)
        actor = events.column("actor").combine_chunks()
        target = events.column("target").combine_chunks()

        def codes(name: str) -> tuple[np.ndarray, dict[str, int]]:
            enc = events.column(name).combine_chunks().dictionary_encode()
            return enc.indices.to_numpy(zero_copy_only=False), {v: i for i, v in enumerate(enc.dictionary.to_pylist())}

        type_codes, type_dict = codes("type")
        kind_codes, kind_dict = codes("target_kind")

        def is_type(*names: str) -> np.ndarray:
            return np.isin(type_codes, [type_dict[n] for n in names if n in type_dict])

        def is_kind(name: str) -> np.ndarray:
            return kind_codes == kind_dict.get(name, -1)

        etype_join = type_codes == type_dict.get("join", -1)
        etype_accept = type_codes == type_dict.get("friend_accept", -1)
        self.now_us = int(ts.max()) if ts.size else 0
        uidx = self._lookup(self.users, actor, ts, self._ensure_user)

        def target_idx(mask: np.ndarray, kind: str) -> np.ndarray:
            sub = target.filter(pa.array(mask))
            if kind == "community":
                return self._lookup(self.communities, sub, ts[mask], self._ensure_community)
            if kind == "user":
                return self._lookup(self.users, sub, ts[mask], self._ensure_user)
            return self._lookup(self.content, sub, ts[mask], None)

        # memberships
        m = is_type("join", "leave")
        a, b, a_ts = _last_state_ts(uidx[m], target_idx(m, "community"), etype_join[m], ts[m])
        # leaves and reports of communities, for labels of later outcomes of a join
        self.join_events, self.leave_events, self.community_reports = (
            self._pair_events(uidx, target, ts, is_type(t) & is_kind("community")) for t in ("join", "leave", "report"))
        # friendships (undirected)
        f = is_type("friend_accept", "friend_remove")
        fu, fv = uidx[f], target_idx(f, "user")
        lo, hi = np.minimum(fu, fv), np.maximum(fu, fv)
        lo, hi = _last_state(lo, hi, etype_accept[f])
        # pending friend requests: pairs whose last friend event (either direction) is a request
        pm = is_type("friend_request", "friend_accept", "friend_remove") | (is_type("block") & is_kind("user"))
        pending_args = (uidx[pm], target_idx(pm, "user"), type_codes[pm] == type_dict.get("friend_request", -1))
        # blocks
        for kind, store in (("user", self.blocked_users), ("community", self.blocked_communities)):
            bm = is_type("block") & is_kind(kind)
            for i, j in zip(uidx[bm].tolist(), target_idx(bm, kind).tolist(), strict=True):
                store[i].add(j)
        # activity heat
        cm = is_type(*ACTIVITY_TYPES) & is_kind("community")
        c_idx = target_idx(cm, "community")
        xm = is_type(*ENGAGE_TYPES) & is_kind("content")
        x_idx = target_idx(xm, "content")
        nu, nc, nx = self.n_users, self.n_communities, self.n_content
        self.members = _Overlay(_csr(a, b, (nu, nc)))
        self.join_ts = _ts_csr(a, b, a_ts, (nu, nc))
        self.friends = _Overlay(_csr(np.r_[lo, hi], np.r_[hi, lo], (nu, nu)), symmetric=True)
        self._index_pending(*pending_args)
        ok = x_idx >= 0
        self.engaged = _Overlay(_csr(uidx[xm][ok], x_idx[ok], (nu, nx)))
        self.community_heat = self._heat(c_idx, uidx[cm], np.log1p(value[cm]) * self._decay(ts[cm]), nc)
        self.activity_log = ActivityLog(c_idx.astype(np.int64), uidx[cm].astype(np.int64),
                                        np.log1p(value[cm]).astype(np.float64), ts[cm].astype(np.int64))
        self.content_heat = self._heat(x_idx[ok], uidx[xm][ok], np.log1p(value[xm][ok]) * self._decay(ts[xm][ok]), nx)
        self.version += 1

    def _pair_events(self, uidx: np.ndarray, target: pa.Array, ts: np.ndarray, mask: np.ndarray) -> PairEvents:
        """Rows ``mask`` as (user, known community, time); unknown communities are dropped, never added."""
        c = self._lookup(self.communities, target.filter(pa.array(mask)), ts[mask], None)
        ok = (c >= 0) & (uidx[mask] >= 0)
        return PairEvents(uidx[mask][ok].astype(np.int64), c[ok], ts[mask][ok].astype(np.int64))

    def _index_pending(self, req: np.ndarray, tgt: np.ndarray, is_request: np.ndarray) -> None:
        """Events in time order between user pairs; the last one per unordered pair decides."""
        last: dict[tuple[int, int], tuple[bool, int, int]] = {}
        for i, j, r in zip(req.tolist(), tgt.tolist(), is_request.tolist(), strict=True):
            if i >= 0 and j >= 0 and i != j:
                last[(min(i, j), max(i, j))] = (r, i, j)
        for r, i, j in last.values():
            if r and not self.friends.has(i, j):
                self.pending_requests[i].add(j)

    def has_pending(self, a: int, b: int) -> bool:
        """A friend request between ``a`` and ``b`` (either direction) is waiting for an answer."""
        return b in self.pending_requests.get(a, ()) or a in self.pending_requests.get(b, ())

    @classmethod
    def from_store(cls, spec: str | Path, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
        """Build from an event store (directory or PostgreSQL URL)."""
        from belong.datasets import World
        from belong.eventlog import open_store

        with open_store(spec, create=False) as store:
            world = World(users=store.users(), communities=store.communities(), content=store.content(),
                          events=store.read_events())
        return cls.from_world(world, half_life_days=half_life_days)

    @classmethod
    def from_interactions(cls, data: Interactions, *, half_life_days: float = HEAT_HALF_LIFE_DAYS) -> WorldState:
        """Offline evaluation: users x items become memberships (or, for a square user x user matrix,
        friendships). Items get their id as name; timestamps, when present, feed trending and are kept as the
        memberships' join times (a pair's earliest row). Interactions say nothing of leaves or reports: those stay
        ``None``."""
        st = cls(half_life_days=half_life_days)
        square = bool(data.meta.get("square")) or (
            data.n_users == data.n_items and np.array_equal(data.user_ids, data.item_ids))
        ts = data.ts_us if data.ts_us is not None else np.zeros(len(data), np.int64)
        st.now_us = int(ts.max()) if ts.size else 0
        ages = data.meta.get("user_age_group")
        for i, u in enumerate(data.user_ids.tolist()):
            age = AgeGroup(ages[i]) if ages is not None and ages[i] in AgeGroup._value2member_map_ else AgeGroup.UNKNOWN
            st.add_user(User(id=str(u), created_at_us=0, age_group=age))
        X = data.csr()
        if square:
            F = ((X + X.T) > 0).astype(np.float32).tocsr()
            F.setdiag(0)
            F.eliminate_zeros()
            st.friends = _Overlay(F, symmetric=True)
            st.members = _Overlay(sp.csr_matrix((st.n_users, 0), dtype=np.float32))
            st.engaged = _Overlay(sp.csr_matrix((st.n_users, 0), dtype=np.float32))
            st.community_heat = {"all": np.zeros(0)}
            st.content_heat = {"all": np.zeros(0)}
            return st
        first = np.full(data.n_items, np.iinfo(np.int64).max)
        np.minimum.at(first, data.items, ts)
        for j, c in enumerate(data.item_ids.tolist()):
            st.add_community(Community(id=str(c), name=str(c), created_at_us=int(min(first[j], st.now_us))))
        st.members = _Overlay(X)
        st.join_ts = _ts_csr(data.users, data.items, ts, X.shape)
        order = np.argsort(ts, kind="stable")
        st.join_events = PairEvents(data.users[order].astype(np.int64), data.items[order].astype(np.int64),
                                    np.asarray(ts, np.int64)[order])
        st.activity_log = ActivityLog(data.items.astype(np.int64), data.users.astype(np.int64),
                                      np.ones(len(data), np.float64), np.asarray(ts, np.int64))
        st.friends = _Overlay(sp.csr_matrix((st.n_users, st.n_users), dtype=np.float32), symmetric=True)
        st.engaged = _Overlay(sp.csr_matrix((st.n_users, 0), dtype=np.float32))
        st.community_heat = st._heat(data.items.astype(np.int64), data.users.astype(np.int64),
                                     st._decay(ts).astype(np.float64), st.n_communities)
        st.content_heat = {"all": np.zeros(0)}
        return st

    # ------------------------------------------------------------------------------------------- updates
    def apply(self, event: Event) -> None:
        """Fold one event in: memberships, friendships, blocks and heat change at once (no rebuild)."""
        u = self._ensure_user(event.actor, event.ts_us)
        kind = event.target_kind.value
        et = event.type
        if et in (EventType.JOIN, EventType.LEAVE):
            c = self._ensure_community(event.target, event.ts_us)
            if self.members.set(u, c, et is EventType.JOIN):
                self.members_rev[c] += 1
                if et is EventType.JOIN:
                    self._join_ts_live[(u, c)] = event.ts_us
        elif et is EventType.FRIEND_REQUEST:
            v = self._ensure_user(event.target, event.ts_us)
            if not self.friends.has(u, v):
                self.pending_requests[u].add(v)
            self.user_rev[v] += 1  # done to them: counts as a change of theirs too
        elif et in (EventType.FRIEND_ACCEPT, EventType.FRIEND_REMOVE):
            v = self._ensure_user(event.target, event.ts_us)
            self.friends.set(u, v, et is EventType.FRIEND_ACCEPT)
            self._clear_pending(u, v)
            self.user_rev[v] += 1
        elif et is EventType.BLOCK:
            if kind == "user":
                v = self._ensure_user(event.target, event.ts_us)
                self.blocked_users[u].add(v)
                self._clear_pending(u, v)
                self.user_rev[v] += 1
            else:
                self.blocked_communities[u].add(self._ensure_community(event.target, event.ts_us))
        if et.value in ACTIVITY_TYPES and kind == "community":
            self._bump(self.community_heat, self._ensure_community(event.target, event.ts_us), u, event)
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
        w = float(np.log1p(event.value) * self._decay(np.array([event.ts_us]))[0])
        for key in ("all", f"locale:{self.user_locale[u]}", f"age:{self.user_age[u]}"):
            if key == "all" or not key.endswith((":und", ":unknown")):
                arr = heat.setdefault(key, np.zeros(len(heat.get("all", ())), np.float64))
                if j < arr.size:
                    arr[j] += w
