"""People you may know: friends of friends, co-members of small communities, shared interests.

All three are reciprocal by design: the score of (a, b) equals the score of (b, a) (mutual friends, shared
communities and shared interests are symmetric relations), so a suggestion shown to one side would be shown to
the other too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import WorldState

if TYPE_CHECKING:
    from belong.models.ials import IALS


def _names(ids: list[str], n: int = 2) -> str:
    shown = ", ".join(ids[:n])
    return shown + (f" and {len(ids) - n} more" if len(ids) > n else "")


class FriendsOfFriendsConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    metric: str = "adamic_adar"  # adamic_adar | resource_allocation | common


@register("source", "friends_of_friends")
class FriendsOfFriends(CandidateSource):
    """Friends of the user's friends, scored by mutual friends weighted by how selective each mutual friend is."""

    Config = FriendsOfFriendsConfig
    config: FriendsOfFriendsConfig

    def prepare(self, state: WorldState) -> None:
        if self.config.metric not in ("adamic_adar", "resource_allocation", "common"):
            raise ValidationError(f"{self.name}.metric", "must be adamic_adar, resource_allocation or common")

    def _weight(self, degree: int) -> float:
        if self.config.metric == "common":
            return 1.0
        if self.config.metric == "resource_allocation":
            return 1.0 / degree
        return 1.0 / np.log(degree) if degree > 1 else 0.0

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE or p.idx is None:
            return []
        scores: dict[int, float] = defaultdict(float)
        via: dict[int, list[int]] = defaultdict(list)
        for f in p.friends.tolist():
            theirs = state.friends_of(f)
            w = self._weight(theirs.size)
            for v in theirs.tolist():
                scores[v] += w
                via[v].append(f)
        exclude = set(p.friends.tolist()) | {p.idx}
        items = [(v, s) for v, s in scores.items() if v not in exclude and s > 0]
        items.sort(key=lambda t: (-t[1], t[0]))
        out = []
        for v, s in items[: self.config.k]:
            mutual = [state.users.ids[f] for f in via[v]]
            text = f"{len(mutual)} mutual friend{'s' if len(mutual) > 1 else ''}: {_names(mutual)}"
            out.append(Candidate(v, self.name, s, Reason(text, {"mutual_friends": len(mutual)})))
        return out


class CoMembersConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    max_community_size: int = 200  # only communities this small say something about who knows whom


@register("source", "co_members")
class CoMembers(CandidateSource):
    """People in the same small communities (each shared community weighs 1 / log(size))."""

    Config = CoMembersConfig
    config: CoMembersConfig

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE or p.idx is None:
            return []
        scores: dict[int, float] = defaultdict(float)
        shared: dict[int, list[int]] = defaultdict(list)
        for c in p.communities.tolist():
            members = state.members_of(c)
            if members.size < 2 or members.size > self.config.max_community_size:
                continue
            w = 1.0 / np.log(members.size + 1)
            for v in members.tolist():
                scores[v] += w
                shared[v].append(c)
        exclude = set(p.friends.tolist()) | {p.idx}
        items = sorted(((v, s) for v, s in scores.items() if v not in exclude), key=lambda t: (-t[1], t[0]))
        out = []
        for v, s in items[: self.config.k]:
            names = [state.communities.name[c] for c in shared[v]]
            text = (f"you are both in {names[0]}" if len(names) == 1
                    else f"you share {len(names)} communities: {_names(names)}")
            out.append(Candidate(v, self.name, s, Reason(text, {"shared_communities": len(names)})))
        return out


class SimilarPeopleConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    locale_weight: float = 0.5  # a shared language counts as half a shared interest


@register("source", "similar_people")
class SimilarPeople(CandidateSource):
    """People who declared the same interests (and speak the same language): works with no history at all."""

    Config = SimilarPeopleConfig
    config: SimilarPeopleConfig

    def prepare(self, state: WorldState) -> None:
        lists: dict[str, list[int]] = defaultdict(list)
        for u, interests in enumerate(state.users.interests):
            for t in interests:
                lists[t].append(u)
        #: per interest, the users who declared it (sorted, once each): arrays, not a Python int per person
        self.by_interest: dict[str, np.ndarray] = {t: np.unique(np.asarray(v, np.int64)) for t, v in lists.items()}
        self.degree = np.diff(state.friend_csr().indptr).astype(np.float64)
        self.n = state.n_users

    def _found(self, request: Request, state: WorldState, locales: tuple[np.ndarray, dict[str, int]] | None = None
               ) -> tuple[np.ndarray, np.ndarray] | None:
        """The best ``k`` people and their scores; None: no interests. ``locales``: every user's language as codes
        and the codes (a batch reads them once; the same comparison as one request's)."""
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE or not p.interests:
            return None
        # only the people sharing an interest score above 0: they alone are scored (one per shared interest)
        found = [idx for t in p.interests if (idx := self.by_interest.get(t)) is not None and idx.size]
        if not found:
            return None
        users, shared = np.unique(np.concatenate(found), return_counts=True)
        scores = shared.astype(np.float64)
        if p.locale != "und":
            codes, ids = locales if locales is not None else state.user_locales()
            scores[codes[users] == ids.get(p.locale, -1)] += self.config.locale_weight
        scores += np.log1p(self.degree[users]) * 1e-3  # ties: more connected first
        exclude = np.r_[p.friends, [] if p.idx is None else [p.idx]].astype(np.int64)
        return self._top_of(users, scores, self.config.k, exclude=exclude)

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate`'s people and scores without candidate objects, the users' languages read once."""
        locales = state.user_locales()
        out = []
        for r in requests:
            found = self._found(r, state, locales)
            out.append(Proposals.empty() if found is None else Proposals(found[0].astype(np.int64), found[1]))
        return out

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        found = self._found(request, state)
        if found is None:
            return []
        top, vals = found
        mine = set(p.interests)
        out = []
        for v, s in zip(top.tolist(), vals.tolist(), strict=True):
            common = [t for t in state.users.interests[v] if t in mine]
            text = "also into " + ", ".join(f"#{t}" for t in common[:3])
            if p.locale != "und" and state.users.locale[v] == p.locale:
                text += f" and speaks {p.locale}"
            out.append(Candidate(v, self.name, s, Reason(text, {"shared_interests": common})))
        return out


#: cells of one dense block of walk positions (8 MiB x 8 bytes = 64 MiB): a batch is walked this many at a time
_BLOCK_CELLS = 1 << 23


class FriendPageRankConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    restart: float = 0.15  # the walk's chance to jump back to the user at each step
    steps: int = 6  # walk length: the sum is truncated after this many steps (exact, deterministic)


@register("source", "friend_pagerank")
class FriendPageRank(CandidateSource):
    """People a random walk over the friend graph, restarting at the user, reaches most: an exact personalized
    PageRank truncated after ``steps`` steps (deterministic, unlike ``pixie``'s sampled walks). The first step
    reads the user's live friends; the rest walks the graph prepared. Computed for a batch of users at once (a
    dense block times the sparse transition matrix per step, at most ``_BLOCK_CELLS`` cells at a time); one
    request is a batch of one. Cost: ``steps`` sparse products over the whole friend graph per block, O(steps x
    friendships) time for one request however few it reaches."""

    Config = FriendPageRankConfig
    config: FriendPageRankConfig

    def prepare(self, state: WorldState) -> None:
        cfg = self.config
        if not 0.0 < cfg.restart < 1.0:
            raise ValidationError(f"{self.name}.restart", f"must be in (0, 1), got {cfg.restart}")
        if cfg.steps < 1:
            raise ValidationError(f"{self.name}.steps", f"must be >= 1, got {cfg.steps}")
        F = state.friend_csr().astype(np.float64)
        deg = np.asarray(F.sum(axis=1)).ravel()
        inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
        self.PT = sp.csr_matrix((sp.diags(inv) @ F).T)  # column-stochastic: x_{t+1} = PT x_t
        self.n = state.n_users

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        return self.generate_batch([request], state)[0]

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        cfg = self.config
        out: list[list[Candidate]] = [[] for _ in requests]
        rows: list[int] = []
        profiles = []
        for i, r in enumerate(requests):
            p = state.profile(r)
            if r.surface is not Surface.PEOPLE or p.idx is None or p.idx >= self.n:
                continue
            friends = p.friends[p.friends < self.n]
            if friends.size == 0:
                continue
            rows.append(i)
            profiles.append((p, friends))
        if not rows:
            return out
        reason = Reason("close to you in the friend graph")
        width = max(1, _BLOCK_CELLS // max(self.n, 1))  # users per block: two n x width blocks of float64
        for lo in range(0, len(rows), width):
            block = profiles[lo: lo + width]
            x = np.zeros((self.n, len(block)), np.float64)  # one column per user: where the walk is after a step
            for j, (_, friends) in enumerate(block):
                x[friends, j] = (1.0 - cfg.restart) / friends.size
            total = cfg.restart * x
            for _ in range(cfg.steps - 1):
                x = (1.0 - cfg.restart) * (self.PT @ x)
                total += cfg.restart * x
            for j, (i, (p, friends)) in enumerate(zip(rows[lo: lo + width], block, strict=True)):
                exclude = np.r_[friends, [p.idx]].astype(np.int64)
                top, vals = self._top(total[:, j], cfg.k, exclude=exclude)
                out[i] = [Candidate(v, self.name, s, reason)
                          for v, s in zip(top.tolist(), vals.tolist(), strict=True)]
        return out


@register("source", "popular_people")
class PopularPeople(CandidateSource):
    """The most connected people (most friends in the prepared graph): the fallback for someone with no friends
    yet, or too few for the graph sources to fill a list. Weighted low, it only fills places the others leave
    empty; the safety rules still apply to every one of them."""

    def prepare(self, state: WorldState) -> None:
        deg = np.diff(state.friend_csr().indptr)
        has = np.flatnonzero(deg > 0)
        order = np.lexsort((has, -deg[has]))  # most friends first, ties by index
        self.order = has[order]
        self.degree = deg

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        if request.surface is not Surface.PEOPLE:
            return []
        exclude = set(p.friends.tolist())
        if p.idx is not None:
            exclude.add(p.idx)
        out = []
        for v in self.order[: self.config.k + len(exclude)].tolist():
            if v in exclude:
                continue
            d = int(self.degree[v])
            out.append(Candidate(v, self.name, float(d), Reason(f"well connected: {d} friends", {"friends": d})))
            if len(out) == self.config.k:
                break
        return out


class FriendEmbeddingConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0  # confidence of an observed friendship (iALS)
    iterations: int = 15
    seed: int = 0
    #: the user's communities as extra columns of the factorised rows (each membership weighing this much; 0: the
    #: friend graph alone): people are then close when their friends *and* communities are alike. Off by default:
    #: on the simulated world 1.0 did no better than 0 (docs/PEOPLE_RANKING.md)
    community_weight: float = 0.0
    #: above this many people the source is off (no fit, no candidates; 0: no limit): it scores every person on
    #: each request (O(people x factors): ~20 ms at 1M people) and its fit on a 1M-person graph takes minutes
    max_people: int = 200_000


@register("source", "friend_embedding")
class FriendEmbedding(CandidateSource):
    """People whose learned embedding is closest to the user's: iALS (:class:`belong.models.ials.IALS`) fitted at
    ``prepare`` on each person's row of friends (people x people, 0/1, symmetric) and memberships (people x
    communities, times ``community_weight``), scored by the inner product of the user's factors with every
    person's column factors. The scores of (a, b) and (b, a) are close but, the row and column factors being
    fitted separately, not equal. A user whose live friends or communities differ from the prepared ones (a new
    friendship, a new user) is folded in: one least-squares solve against the fixed factors. No friends and no
    communities: nothing (the fallback ``popular_people`` covers them).

    Bounds: memory 2 x people x ``factors`` float32 (plus the prepared graph); fit O(``iterations`` x (friendships
    x ``factors``^2 + people x ``factors``^3)) (LastFM-Asia, 7.6k people, 22k friendships: about a second); per
    request O(people x ``factors``) (one matrix-vector product over every person's factors); a batch does the
    same per user (the fold-ins together). Off above ``max_people`` people (default 200,000): no fit, no
    candidates (an ANN index over the factors would lift that limit)."""

    Config = FriendEmbeddingConfig
    config: FriendEmbeddingConfig

    def _ials(self) -> IALS:
        from belong.sources.embedding import ials_of

        return ials_of(self.config)

    def prepare(self, state: WorldState) -> None:
        cfg = self.config
        for field, value in (("factors", cfg.factors), ("iterations", cfg.iterations)):
            if value < 1:
                raise ValidationError(f"{self.name}.{field}", f"must be >= 1, got {value}")
        if cfg.regularization < 0:
            raise ValidationError(f"{self.name}.regularization", f"must be >= 0, got {cfg.regularization}")
        if cfg.alpha <= 0:
            raise ValidationError(f"{self.name}.alpha", f"must be > 0, got {cfg.alpha}")
        if cfg.community_weight < 0:
            raise ValidationError(f"{self.name}.community_weight", f"must be >= 0, got {cfg.community_weight}")
        if cfg.max_people < 0:
            raise ValidationError(f"{self.name}.max_people", f"must be >= 0 (0: no limit), got {cfg.max_people}")
        F = sp.csr_matrix(state.friend_csr(), dtype=np.float32)
        self.n = F.shape[0]
        if cfg.community_weight > 0 and state.n_communities:
            M = sp.csr_matrix(state.membership_csr(), dtype=np.float32) * np.float32(cfg.community_weight)
            F = sp.csr_matrix(sp.hstack([F, M], format="csr"), dtype=np.float32)
        F.eliminate_zeros()
        F.sort_indices()
        self.model: IALS | None = None
        self.trained_rows = F
        if F.nnz == 0 or 0 < cfg.max_people < self.n:  # nothing to learn, or off on graphs this large (max_people)
            return
        self.model = self._ials().fit(F)

    def fitted(self) -> dict[str, Any]:
        if self.model is None:
            return {}
        return {"user_factors": self.model.user_factors, "item_factors": self.model.item_factors,
                "trained_rows": self.trained_rows}

    def restore(self, fitted: dict[str, Any], state: WorldState) -> None:
        self.model = None
        if fitted:
            self.model = self._ials().set_factors(fitted["user_factors"], fitted["item_factors"])
            self.trained_rows = sp.csr_matrix(fitted["trained_rows"], dtype=np.float32)
            self.trained_rows.sort_indices()
            self.n = min(self.trained_rows.shape)

    def _vectors(self, asks: list[tuple[int | None, np.ndarray, np.ndarray]]) -> np.ndarray:
        """The users' factors (one row each): trained ones where their row (friends, then communities) is the
        prepared one, the others folded in together (one least-squares solve each against the fixed factors)."""
        assert self.model is not None
        X = self.trained_rows
        out = np.empty((len(asks), self.model.user_factors.shape[1]), np.float32)
        fold: list[int] = []
        for j, (u, cols, vals) in enumerate(asks):
            lo, hi = (X.indptr[u], X.indptr[u + 1]) if u is not None and u < X.shape[0] else (0, 0)
            if hi > lo and np.array_equal(X.indices[lo:hi], cols) and np.array_equal(X.data[lo:hi], vals):
                out[j] = self.model.user_factors[u]
            else:
                fold.append(j)
        if fold:
            parts = [asks[j] for j in fold]
            R = sp.csr_matrix((np.concatenate([v for _, _, v in parts]), np.concatenate([c for _, c, _ in parts]),
                               np.r_[0, np.cumsum([c.size for _, c, _ in parts])]), shape=(len(fold), X.shape[1]))
            out[fold] = self.model.user_vectors(R)
        return out

    def _found_batch(self, requests: list[Request], state: WorldState
                     ) -> list[tuple[np.ndarray, np.ndarray] | None]:
        """Each request's best ``k`` people (not the user, not a friend) and their scores; None: no vector."""
        out: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(requests)
        if self.model is None:
            return out
        rows: list[int] = []
        asks: list[tuple[int | None, np.ndarray, np.ndarray]] = []
        n_cols = self.trained_rows.shape[1]
        w = np.float32(self.config.community_weight)
        for i, r in enumerate(requests):
            p = state.profile(r)
            if r.surface is not Surface.PEOPLE:
                continue
            friends = np.unique(p.friends[p.friends < self.n]).astype(np.int64)
            comms = np.unique(p.communities).astype(np.int64) + self.n if n_cols > self.n else np.empty(0, np.int64)
            comms = comms[comms < n_cols]
            if friends.size + comms.size == 0:
                continue
            rows.append(i)
            asks.append((p.idx, np.r_[friends, comms],
                         np.r_[np.ones(friends.size, np.float32), np.full(comms.size, w, np.float32)]))
        if not rows:
            return out
        V = self.model.item_factors[: self.n]
        Q = self._vectors(asks)
        for j, (i, (u, cols, _)) in enumerate(zip(rows, asks, strict=True)):
            friends = cols[cols < self.n]
            exclude = friends if u is None else np.r_[friends, [u]].astype(np.int64)
            # one product per user, as for a single request: a batched product may round differently
            out[i] = self._top(V @ Q[j], self.config.k, exclude=exclude)
        return out

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate_batch`'s people and scores without candidate objects."""
        return [Proposals.empty() if f is None else Proposals(f[0].astype(np.int64), f[1])
                for f in self._found_batch(requests, state)]

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        reason = Reason("people with friends like yours")
        return [[] if f is None else [Candidate(v, self.name, s, reason)
                                      for v, s in zip(f[0].tolist(), f[1].tolist(), strict=True)]
                for f in self._found_batch(requests, state)]

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        return self.generate_batch([request], state)[0]
