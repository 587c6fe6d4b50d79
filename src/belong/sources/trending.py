"""Trending (time-decayed popularity, overall and per locale / age group) and a pool of new communities.

Heat is kept by :class:`~belong.pipeline.state.WorldState` (half-life 7 days by default; every join, message,
reaction, voice minute and view adds ``log1p(value)`` decayed to the state's clock), so it moves with each event.
"""

from __future__ import annotations

import numpy as np

from belong.domain import Surface
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import DAY_US, Profile, WorldState


class TrendingConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    segment_weight: float = 1.0  # weight of the user's locale / age-group heat
    overall_weight: float = 0.2  # weight of overall heat (normalised like the segments)


def _describe(key: str) -> str:
    kind, _, value = key.partition(":")
    if kind == "locale":
        return f"popular this week in your language ({value})"
    if kind == "age":
        return "popular this week among people like you"  # never the age group: an answer may be read by others
    return "popular this week"


@register("source", "trending")
class Trending(CandidateSource):
    """What is hot right now for people like the user (locale, age group), then overall."""

    Config = TrendingConfig
    config: TrendingConfig

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        return self.generate_batch([request], state)[0]

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        """The segments' blend is computed once per (surface, segments) in the batch, then each user's own items
        are left out: the same candidates as one request at a time."""
        out: list[list[Candidate]] = []
        for found in self._found(requests, state):
            if found is None:
                out.append([])
                continue
            top, vals, stack, texts = found
            best = np.argmax(stack[:, top], axis=0) if top.size else np.empty(0, int)
            out.append([Candidate(int(j), self.name, float(s), texts[b])
                        for j, s, b in zip(top, vals, best, strict=True)])
        return out

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate_batch`'s items and scores without candidate objects."""
        return [Proposals.empty() if f is None else Proposals(f[0].astype(np.int64), f[1])
                for f in self._found(requests, state)]

    def _found(self, requests: list[Request], state: WorldState) -> list[tuple | None]:
        """Per request ``(top items, scores, the stacked parts, one reason per part)``; None: nothing."""
        blends: dict[tuple, tuple | None] = {}
        out: list[tuple | None] = []
        for request in requests:
            p = state.profile(request)
            key = (request.surface, *state.segments(p))
            if key not in blends:
                blends[key] = self._blend(request.surface, key[1:], state)
            blend = blends[key]
            if blend is None:
                out.append(None)
                continue
            parts, stack, scores, texts = blend
            top, vals = self._top(scores, self.config.k, exclude=self._owned(request, p, state))
            out.append((top, vals, stack, texts))
        return out

    def _blend(self, surface: Surface, segments: tuple, state: WorldState) -> tuple | None:
        """``(parts, stacked normalised heats, their sum, one reason per part)`` for users of these segments."""
        if surface is Surface.PEOPLE:
            return None
        heat = state.content_heat if surface is Surface.CONTENT else state.community_heat
        overall = heat.get("all")
        if overall is None or overall.size == 0:
            return None
        parts: list[tuple[str, np.ndarray]] = []
        for key in segments:
            h = heat.get(key)
            if h is not None and h.max(initial=0) > 0:
                parts.append((key, self.config.segment_weight * h / h.max()))
        parts.append(("all", self.config.overall_weight * overall / max(overall.max(initial=0), 1e-12)))
        stack = np.vstack([np.resize(h, overall.size) for _, h in parts])
        texts = [Reason(_describe(k), {"segment": k}) for k, _ in parts]
        return parts, stack, stack.sum(axis=0), texts

    @staticmethod
    def _owned(request: Request, p: Profile, state: WorldState) -> np.ndarray:
        if request.surface is Surface.CONTENT:
            return state.engaged.row(p.idx) if p.idx is not None else np.empty(0, np.int64)
        return p.communities


class NewCommunitiesConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    max_age_days: float = 30.0  # "new" means created at most this long before the state's clock ...
    min_pool: int = 20  # ... or, when fewer are that young, the youngest ``min_pool`` communities
    k: int = 50


@register("source", "new_communities")
class NewCommunities(CandidateSource):
    """Exploration: recently created communities, those matching the user's interests or language first."""

    Config = NewCommunitiesConfig
    config: NewCommunitiesConfig

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        found = self._found(request, state)
        if found is None:
            return []
        p, fresh, score, order, age_days, matches, same_lang = found
        out = []
        for i in order.tolist():
            c, match = int(fresh[i]), matches[i]
            new = "new community" if age_days[c] <= self.config.max_age_days else (
                f"recently created community ({age_days[c]:.0f} days old)")
            if match:
                text = f"{new} matching " + ", ".join(f"#{t}" for t in match[:3])
            elif same_lang[i]:
                text = f"{new} in your language ({p.locale})"
            else:
                text = new
            out.append(Candidate(c, self.name, float(score[i]),
                                 Reason(text, {"age_days": round(float(age_days[c]), 1)})))
        return out

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate`'s items and scores without candidate objects."""
        out = []
        pool = self._pool(state) if state.n_communities else None
        for r in requests:
            found = self._found(r, state, pool)
            if found is None:
                out.append(Proposals.empty())
                continue
            _, fresh, score, order, *_ = found
            out.append(Proposals(fresh[order].astype(np.int64), score[order].astype(np.float64)))
        return out

    def _pool(self, state: WorldState) -> tuple[np.ndarray, np.ndarray]:
        """``(every community's age in days, the pool of new ones)``: the same for every user."""
        created = state.created_array()
        age_days = (state.now_us - created) / DAY_US
        fresh = np.flatnonzero(age_days <= self.config.max_age_days)
        if fresh.size < self.config.min_pool:
            fresh = np.argsort(age_days, kind="stable")[: self.config.min_pool]
        pool = max(self.config.min_pool, 4 * self.config.k)
        if fresh.size > pool:  # many "new" ones (or no real creation times): the youngest few are enough to rank
            fresh = np.sort(fresh[np.argsort(age_days[fresh], kind="stable")[:pool]])
        return age_days, fresh

    def _found(self, request: Request, state: WorldState,
               pool: tuple[np.ndarray, np.ndarray] | None = None) -> tuple | None:
        """``(profile, the pool, scores, the best k positions in it, ages in days, tags matched, same
        language)``; None: nothing to propose."""
        p = state.profile(request)
        if request.surface is not Surface.COMMUNITIES or state.n_communities == 0:
            return None
        age_days, fresh = self._pool(state) if pool is None else pool
        interests = set(p.interests)
        for c in p.communities.tolist():
            interests.update(state.communities.tags[c])
        fresh = np.setdiff1d(fresh, p.communities)
        matches = [[t for t in state.communities.tags[c] if t in interests] for c in fresh.tolist()] if interests else [
            [] for _ in range(fresh.size)]
        same_lang = np.array([p.locale != "und" and state.communities.locale[c] == p.locale for c in fresh.tolist()],
                             bool)
        score = (2.0 * np.array([len(m) for m in matches], np.float64) + same_lang
                 + 1.0 / (1.0 + np.maximum(age_days[fresh], 0.0)))
        order = np.lexsort((fresh, -score))[: self.config.k]
        return p, fresh, score, order, age_days, matches, same_lang


class CommunityContentConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    half_life_days: float = 3.0  # freshness decay of content


@register("source", "community_content")
class CommunityContent(CandidateSource):
    """Fresh content of the user's communities, newest and most engaged first."""

    Config = CommunityContentConfig
    config: CommunityContentConfig

    def prepare(self, state: WorldState) -> None:
        by_c: dict[int, list[int]] = {}
        for x, c in enumerate(state.content.community):
            by_c.setdefault(c, []).append(x)
        self.by_community = {c: np.array(xs, np.int64) for c, xs in by_c.items()}

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        p = state.profile(request)
        if request.surface is not Surface.CONTENT or p.communities.size == 0:
            return []
        parts = [self.by_community[c] for c in p.communities.tolist() if c in self.by_community]
        if not parts:
            return []
        xs = np.concatenate(parts)
        created = np.asarray(state.content.created, np.int64)[xs]
        fresh = np.exp2(-np.maximum(state.now_us - created, 0) / (self.config.half_life_days * DAY_US))
        heat = state.content_heat.get("all", np.zeros(0))
        eng = np.log1p(np.resize(heat, state.n_content)[xs]) if heat.size else 0.0
        scores = np.zeros(state.n_content)
        scores[xs] = fresh + 0.1 * eng + 1e-9
        seen = state.engaged.row(p.idx) if p.idx is not None else np.empty(0, np.int64)
        top, vals = self._top(scores, self.config.k, exclude=seen)
        names = state.communities.name
        return [Candidate(int(x), self.name, float(s),
                          Reason(f"new in {names[state.content.community[x]]}, one of your communities"))
                for x, s in zip(top, vals, strict=True)]
