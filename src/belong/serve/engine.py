"""The recommendation hot path: cached candidates -> rules -> select -> hydrate -> online features -> respond.

Stages and their budgets:

1. **cache** — the user's ranked candidates from :class:`~belong.serve.cache.CandidateCache`. A fresh entry is a
   hit; an expired one (older than the TTL) is the user's last good list: it answers at once while a background
   run refreshes it (stale-while-revalidate).
2. **sources** (miss only) — every candidate source of the surface, its hydrators, its filters and its scorer,
   run in a worker thread under ``budget_sources_ms``. When the budget runs out or a source fails, the request
   answers from the model's popular fallback, marked degraded (``sources_timeout`` / ``sources_error``); the run
   goes on in the background and fills the cache for the next request. Concurrent misses of one user share one
   run.
3. **rules** — the surface's filters, re-applied on every request to the live state (a join, a block, a ban is
   seen at once), on just enough of the ranked list to fill ``k``. For communities the last answer on the same
   cached list is reused while nothing the rules read has changed (:meth:`Engine._memo_rules`: the user's and the
   communities' change counters), and so is a deterministic selector's answer on it.
4. **select** — the surface's selector (top-k, per-source cap).
5. **hydrate** — the surface's hydrators (social proof) on the chosen items only.
6. **features** — the user's and the likely items' online features in one round trip (Redis pipeline), under
   ``budget_features_ms``; unavailable -> answered without them, degraded ``features_unavailable``. The read is
   *sent* before stage 3 (for the head of the ranked list) and collected here, so Redis answers while the rules,
   selection and hydration run (:meth:`FeatureReader.start` / :meth:`~FeatureReader.finish`). Rows read are
   kept in process (:mod:`belong.serve.rowcache`), invalidated by Redis itself when they change
   (:mod:`belong.serve.tracking`): a warm request whose rows are unchanged makes no round trip.

The hydrators run on the chosen items only, and not even that when the same chosen objects were hydrated at the
same revisions (:meth:`belong.pipeline.components.Hydrator.revision`; social: the user's counter and each chosen
community's member counter).

The serialised items of the last answer on a cached list are reused (an ``orjson.Fragment``) while the chosen
items, their scores, their hydrated features and the materialisation times of the stored feature rows are all
equal: the bytes would be the same.

The surface's scorer orders the list when it is built (stage 2): the learned ranker (``lgbm_ranker``) when the
active version comes from a ``belong train`` artifact of a ranked surface — its calibrated ``p_join`` is kept with
each item —, else the blend. A join removes that community from the user's cached list at once; a leave, a block
or a new friendship drops the list, so the next request rebuilds and re-ranks it. The online features are returned with each item (the ranker's inputs,
logged with the impression). Nothing here allocates arrays of the catalogue's size per request on a cache hit.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from belong.domain import SURFACE_NAME, Surface
from belong.pipeline import Pipeline
from belong.pipeline.types import Merged, NewUser, Removed, Request
from belong.serve.cache import CandidateCache, Entry, Packed, Ranked
from belong.serve.degrade import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.models import ModelRegistry, ModelVersion
from belong.serve.settings import ServeSettings

#: request ids: 32 hex digits, a random 64-bit prefix per process then a counter (unique like a uuid4, without
#: a system call per request)
_RID_PREFIX = os.urandom(8).hex()
_RID_SEQ = itertools.count()


def _new_rid_prefix() -> None:  # a forked worker gets its own prefix
    global _RID_PREFIX
    _RID_PREFIX = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_rid_prefix)


class NotReady(Exception):
    """No model version is active yet (the first build is still running)."""


def run_sources(pipeline: Pipeline, model: ModelVersion, request: Request, depth: int) -> tuple[Ranked, dict]:
    """Sources -> hydrate -> filters -> score, as :meth:`Pipeline.run` does (the scorer sees the same hydrated
    features as in training and offline evaluation), keeping the ``depth`` best (a cache entry)."""
    state = model.state
    merged: dict[int, Merged] = {}
    source_ms: dict[str, float] = {}
    counts: dict[str, int] = {}
    for src in pipeline.sources:
        t0 = time.perf_counter()
        cands = sorted(src.generate(request, state), key=lambda c: (-c.score, c.item))[: src.config.k]
        source_ms[src.name] = round((time.perf_counter() - t0) * 1e3, 3)
        counts[src.name] = len(cands)
        for rank, c in enumerate(cands):
            merged.setdefault(c.item, Merged(c.item)).hits[src.name] = (rank, c)
    cands_m = list(merged.values())
    n = len(cands_m)
    for h in pipeline.hydrators:
        h.hydrate(request, state, cands_m)
    removed: list[Removed] = []
    for f in pipeline.filters:
        res = f.apply(request, state, cands_m)
        cands_m = res.kept
        removed.extend(Removed(m.item, f.name, why) for m, why in res.removed)
    scores = pipeline.scorer.score(request, state, cands_m)
    order = sorted(range(len(cands_m)), key=lambda i: (-scores[i], cands_m[i].item))[:depth]
    ranked = [(cands_m[i], float(scores[i])) for i in order]
    trace = {"source_ms": source_ms, "source_counts": counts, "candidates": n,
             "removed": [(r.item, r.filter, r.reason) for r in removed]}
    return ranked, trace


class Engine:
    """Answers recommendation requests for the active model; see the module docstring."""

    def __init__(self, registry: ModelRegistry, features: FeatureReader, metrics: Metrics,
                 settings: ServeSettings) -> None:
        self.registry = registry
        self.features = features
        self.metrics = metrics
        self.settings = settings
        self.cache = CandidateCache(settings.candidate_ttl_s, settings.cache_users)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="belong-sources")
        self._inflight: dict[tuple[str, Surface, str], asyncio.Future] = {}

    def model(self) -> ModelVersion:
        model = self.registry.active
        if model is None:
            raise NotReady
        return model

    # ------------------------------------------------------------------------------------------- candidates
    def _start_run(self, model: ModelVersion, request: Request) -> asyncio.Future:
        """One background run per (version, surface, user); it fills the cache when it completes."""
        key = (model.version, request.surface, request.user_id)
        fut = self._inflight.get(key)
        if fut is not None:
            return fut
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.executor, run_sources, model.pipelines[request.surface], model, request,
                                   self.settings.cache_depth)

        def done(f: asyncio.Future) -> None:
            self._inflight.pop(key, None)
            if f.cancelled():
                return
            if f.exception() is not None:  # counted here: nobody may be waiting for this run any more
                self.metrics.errors.labels(f"source:{type(f.exception()).__name__}").inc()
                return
            ranked, trace = f.result()
            self.cache.put(request.surface, request.user_id, Entry(model.version, time.monotonic(), ranked, trace))

        fut.add_done_callback(done)
        self._inflight[key] = fut
        return fut

    async def _candidates(self, model: ModelVersion, request: Request, stages: dict[str, float],
                          reasons: list[str]) -> tuple[Ranked, dict, str, dict[int, dict], dict | None, Entry | None]:
        surface = request.surface
        t0 = time.perf_counter()
        entry, fresh = self.cache.get(surface, request.user_id, model.version)
        stages["cache"] = (time.perf_counter() - t0) * 1e3
        if entry is not None:
            status = "hit" if fresh else "stale"
            self.metrics.cache_lookup(surface, status)
            if not fresh:  # stale-while-revalidate: answer now, refresh in the background
                self._start_run(model, request)
            return entry.ranked, entry.trace, status, entry.statics, entry.feature_rows, entry
        status = "miss"
        self.metrics.cache_lookup(surface, status)
        t0 = time.perf_counter()
        fut = self._start_run(model, request)
        try:
            ranked, trace = await asyncio.wait_for(asyncio.shield(fut), self.settings.budget_sources_ms / 1e3)
            return ranked, trace, status, {}, None, None
        except TimeoutError:
            reason = "sources_timeout"
        except Exception:  # a failing source or dependency degrades the answer, never fails it (counted in done)
            reason = "sources_error"
        finally:
            stages["sources"] = (time.perf_counter() - t0) * 1e3
        reasons.append(reason)
        self.metrics.fallbacks.labels(f"{reason}:popular").inc()
        return model.fallback[surface], {"fallback": "popular"}, status, {}, None, None

    # ------------------------------------------------------------------------------------------- rules
    @staticmethod
    def _rules(pipeline: Pipeline, model: ModelVersion, request: Request, ranked: Ranked, want_all: bool
               ) -> tuple[list[Merged], list[float], list[Removed]]:
        """Filters on the live state over chunks of the ranked list until ``k`` survive (all of it for debug)."""
        kept: list[Merged] = []
        scores: list[float] = []
        removed: list[Removed] = []
        step = len(ranked) if want_all else request.k + max(4, request.k // 4)  # a few spare for removals
        i = 0
        while i < len(ranked) and (want_all or len(kept) < request.k):
            chunk = ranked.light(i, i + step) if isinstance(ranked, Packed) and not want_all else ranked[i:i + step]
            score_of = {m.item: s for m, s in chunk}
            ms = [m for m, _ in chunk]
            for f in pipeline.filters:
                res = f.apply(request, model.state, ms)
                ms = res.kept
                removed.extend(Removed(m.item, f.name, why) for m, why in res.removed)
            kept.extend(ms)
            scores.extend(score_of[m.item] for m in ms)
            i += step
        return kept, scores, removed

    def _memo_rules(self, pipeline: Pipeline, model: ModelVersion, request: Request, ranked: Ranked,
                    entry: Entry | None, want_all: bool) -> tuple[list[Merged], list[float], list[Removed]]:
        """:meth:`_rules`, or its last answer for this cached list when nothing it reads has changed since.

        Communities only: their rules read the user's own memberships, blocks and profile and the communities'
        attributes, which ``WorldState.rules_revision`` counts (any event of the user, any community change).
        The memo is exact, not a TTL: one such change and the rules run again on the live state."""
        if entry is None or want_all or request.surface is not Surface.COMMUNITIES:
            return self._rules(pipeline, model, request, ranked, want_all)
        state = model.state
        key = (request.k, request.new_user, state.rules_revision(state.profile(request).idx))
        memo = entry.rules
        if memo is not None and memo[0] is ranked and memo[1] == key:
            return memo[2], memo[3], []
        kept, scores, removed = self._rules(pipeline, model, request, ranked, want_all)
        entry.rules = (ranked, key, kept, scores)
        return kept, scores, removed

    # ------------------------------------------------------------------------------------------- request
    async def recommend(self, surface: Surface, user_id: str, k: int, *, debug: bool = False,
                        new_user: NewUser | None = None) -> bytes:
        """The JSON body of one recommendation answer (see :class:`belong.serve.schemas.Recommendations`)."""
        t_start = time.perf_counter()
        model = self.model()
        pipeline = model.pipelines[surface]
        request = Request(user_id, surface, k=k, new_user=new_user)
        model.state.profile(request)  # unknown user -> UnknownIdError (404) before any work
        stages: dict[str, float] = {}
        reasons: list[str] = []
        ranked, trace, cache_status, statics, memo, entry = await self._candidates(model, request, stages, reasons)
        t0 = time.perf_counter()
        spare = request.k + max(4, request.k // 4)
        head = ranked.head(spare) if isinstance(ranked, Packed) else [m.item for m, _ in ranked[:spare]]
        item_ids = pipeline.item_ids()
        pending = self.features.start(surface, user_id, [item_ids[i] for i in head])  # overlaps the rules
        feature_ms = (time.perf_counter() - t0) * 1e3

        try:
            t0 = time.perf_counter()
            try:
                kept, scores, removed = self._memo_rules(pipeline, model, request, ranked, entry, debug)
            except Exception as exc:  # the state changed under a background run: serve the popular list instead
                self.metrics.errors.labels(f"rules:{type(exc).__name__}").inc()
                reasons.append("rules_error")
                self.metrics.fallbacks.labels("rules_error:popular").inc()
                ranked, statics, memo = model.fallback[surface], {}, None  # nothing of the cached list is reused
                kept, scores, removed = self._rules(pipeline, model, request, ranked, debug)
            t1 = time.perf_counter()
            stages["rules"] = (t1 - t0) * 1e3
            selector = pipeline.selector
            memo_sel = (entry is not None and not selector.mutates and selector.deterministic
                        and entry.rules is not None and entry.rules[2] is kept)  # kept: the memoised rules answer
            if memo_sel and entry.chosen is not None and entry.chosen[0] is kept:
                chosen = entry.chosen[1]
            else:
                if selector.mutates:  # kept objects may be a memoised answer: the selector gets its own
                    kept = [Merged(m.item, m.hits, dict(m.features)) for m in kept]
                chosen = selector.select(request, kept, np.asarray(scores, np.float64))
                if memo_sel:
                    entry.chosen = (kept, chosen)
            t2 = time.perf_counter()
            stages["select"] = (t2 - t1) * 1e3
            hkey = None
            if isinstance(ranked, Packed):  # objects unpacked for this list (or its memo): hydrated in place
                fresh = [m for m, _ in chosen]
                if entry is not None:
                    hkey = self._hydrate_revision(pipeline, request, model.state, fresh)
                done_h = entry.hydrated if entry is not None else None
                if hkey is None or done_h is None or done_h[0] is not chosen or done_h[1] != hkey:
                    for h in pipeline.hydrators:
                        h.hydrate(request, model.state, fresh)
                    if hkey is not None:
                        entry.hydrated = (chosen, hkey)  # type: ignore[union-attr]
            else:  # the model's popular fallback: shared by every user, hydrated on copies
                fresh = [Merged(m.item, m.hits, dict(m.features)) for m, _ in chosen]
                for h in pipeline.hydrators:
                    h.hydrate(request, model.state, fresh)
        except BaseException:
            self.features.finish(pending, [])  # collect the read in flight (its replies must leave the connection)
            raise
        t3 = time.perf_counter()
        stages["hydrate"] = (t3 - t2) * 1e3
        ids = [item_ids[m.item] for m in fresh]
        online, why = self.features.finish(pending, ids, memo)
        if why is not None:
            reasons.append(why)
            self.metrics.fallbacks.labels(why).inc()
        t4 = time.perf_counter()
        stages["features"] = feature_ms + (t4 - t3) * 1e3
        user_features = online.user if online is not None else {}  # the same in every row: sent once
        items: list | orjson.Fragment | None = None
        sig = None
        if entry is not None and online is not None and online.keys is not None and not debug:
            # everything the items below are made of; equal -> the same bytes (exact, nothing is skipped that
            # could differ: the hydrated features and the stored rows' times are this request's own)
            if hkey is not None:  # the same chosen objects, hydrated at these revisions
                sig = (hkey, online.keys)
            else:
                sig = (tuple(m.item for m in fresh), tuple(s for _, s in chosen),
                       tuple(tuple(m.features.items()) for m in fresh), online.keys)
            done = entry.items_json
            if done is not None and done[2] is ranked and done[0] == sig and (hkey is None or done[3] is chosen):
                items = orjson.Fragment(done[1])
        if items is None:
            items = []
            for rank, (m, ident, (_, score)) in enumerate(zip(fresh, ids, chosen, strict=True), start=1):
                static = statics.get(m.item)
                if static is None:  # first use of this item from this list: with its reasons (not unpacked above)
                    full = ranked.full(m.item) if isinstance(ranked, Packed) else None
                    static = statics[m.item] = self._static(pipeline, full or m, ident, score)
                row = m.features if online is None else m.features | online.items[rank - 1]
                propensity = m.features.get("propensity", 1.0)  # < 1 for an exploration pick (the selector's)
                items.append({"rank": rank, "position": rank - 1, **static, "propensity": propensity,
                              "features": row})
            if sig is not None and entry is not None:
                done_bytes = orjson.dumps(items)
                entry.items_json = (sig, done_bytes, ranked, chosen)
                items = orjson.Fragment(done_bytes)
        body: dict[str, Any] = {
            "request_id": f"{_RID_PREFIX}{next(_RID_SEQ):016x}", "surface": SURFACE_NAME[surface], "user_id": user_id,
            "model_version": model.version, "k": k, "user_features": user_features, "items": items,
            "degraded": bool(reasons), "degraded_reasons": reasons, "cache": cache_status,
        }
        t5 = time.perf_counter()
        stages["respond"] = (t5 - t4) * 1e3
        if debug:
            miss_removed = trace.get("removed", [])
            body["debug"] = {
                "stage_ms": {s: round(v, 3) for s, v in stages.items()} | {"total": round((t5 - t_start) * 1e3, 3)},
                "source_ms": trace.get("source_ms", {}), "source_counts": trace.get("source_counts", {}),
                "candidates": trace.get("candidates", len(ranked)), "fallback": trace.get("fallback"),
                "removed": [{"id": pipeline.item_id(i), "filter": f, "reason": r, "when": "sources"}
                            for i, f, r in miss_removed]
                + [{"id": pipeline.item_id(r.item), "filter": r.filter, "reason": r.reason, "when": "request"}
                   for r in removed],
            }
        out = orjson.dumps(body)
        name = SURFACE_NAME[surface]
        self.metrics.observe_stages(name, stages)
        self.metrics.observe_request(name, time.perf_counter() - t_start)
        return out

    @staticmethod
    def _hydrate_revision(pipeline: Pipeline, request: Request, state, fresh: list[Merged]) -> tuple | None:
        """Every hydrator's :meth:`~belong.pipeline.components.Hydrator.revision` of ``fresh`` (None unless all
        give one)."""
        keys = []
        for h in pipeline.hydrators:
            k = h.revision(request, state, fresh)
            if k is None:
                return None
            keys.append(k)
        return tuple(keys)

    @staticmethod
    def _static(pipeline: Pipeline, m: Merged, ident: str, score: float) -> dict[str, Any]:
        """The response fields of an item that do not change between requests for the same cached list."""
        contrib = getattr(pipeline.scorer, "contributions", None)
        weight = contrib(m) if contrib else {s: -r for s, (r, _) in m.hits.items()}
        order = sorted(m.hits, key=lambda s: (-weight[s], s))
        texts = list(dict.fromkeys(t for s in order if (t := m.hits[s][1].reason.text)))
        return {"id": ident, "name": pipeline.item_label(m.item), "score": round(score, 6), "source": order[0],
                "sources": tuple(order), "explanation": "; ".join(texts[:2])}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.features.close()
