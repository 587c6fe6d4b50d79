"""The recommendation hot path: a request as named stages over a per-request :class:`Context`.

====================  ==================================================================================
stage                 what
====================  ==================================================================================
``candidates``        the user's cached list (:class:`~belong.serve.cache.CandidateCache`; a stale one answers at
                      once while a background run refreshes it), else :meth:`Pipeline.candidates
                      <belong.pipeline.pipeline.Pipeline.candidates>` in a worker thread under
                      ``budget_sources_ms`` (over budget or failing: the model's popular list, degraded; concurrent
                      misses of one user share one run, which fills the cache); before that run, a list stored by
                      ``belong candidates precompute`` when configured (:mod:`belong.serve.precomputed`; one
                      made before the person's own events answers stale while it is refreshed: here, in the
                      background, or by the job: ``BELONG_PRECOMPUTED_REFRESH``)
``read_features``     an admin's answer only (the one that shows feature rows): the online-feature read of the
                      list's head is *sent* (:meth:`FeatureReader.start`)
``finish``            :meth:`Pipeline.finish <belong.pipeline.pipeline.Pipeline.finish>`: live rules, selection,
                      hydration and explanations, each reused from the list's memo while what it reads is unchanged
``collect_features``  the read's replies (:meth:`FeatureReader.finish`); unavailable: answered without, degraded
``respond``           the JSON body; the serialised items are reused while everything they are made of is equal
====================  ==================================================================================

The surface's scorer orders the list when it is made (the learned ranker when the version comes from a
``belong train`` artifact, else the blend). A join removes that community from the user's cached list at once; a
leave, a block or a new friendship drops the list. The online features (the ranker's inputs) are returned with each
item to admin callers only, so only their answers read them; everyone else gets the social proof
(:mod:`belong.serve.access`), which the candidate stage made, and no feature read (it was 17% of a cold request's
samples at 1M: docs/SCALING.md). Nothing here
allocates arrays of the catalogue's size on a cache hit.
"""

from __future__ import annotations

import asyncio
import functools
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson

from belong.domain import SURFACE_NAME, Surface
from belong.errors import ValidationError
from belong.experiments.serving import Routed, Router
from belong.pipeline import Pipeline
from belong.pipeline.types import Candidates, Finished, NewUser, Ranked, RankedList, Request
from belong.serve.access import public_features
from belong.serve.cache import CandidateCache, Entry, Serialized
from belong.serve.feature_reader import FeatureReader, Online, Pending
from belong.serve.metrics import Metrics
from belong.serve.precomputed import PrecomputedLists
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, ModelVersion

#: request ids: 32 random hex digits (128 bits from the OS's CSPRNG): unique and unpredictable, so one caller's id
#: tells nothing about another's (a per-process prefix and a counter did)
new_request_id = functools.partial(secrets.token_hex, 16)


DAY_US = 86_400_000_000


def request_seed(state: Any, fixed: int | None) -> int:
    """A request's seed: ``fixed``, or (None) the state's day — its clock (event time: the latest event folded,
    :func:`belong.serve.versions.fold`) in whole days since the epoch (``BELONG_REQUEST_SEED``)."""
    return int(fixed) if fixed is not None else int(state.now_us) // DAY_US


class NotReady(Exception):
    """No model version is active yet (the first build is still running)."""


@dataclass(slots=True)
class Context:
    """One request as it moves through the engine's stages."""

    model: ModelVersion
    pipeline: Pipeline
    request: Request
    debug: bool
    started: float
    private: bool = False  # the caller may see feature rows (admin): see belong.serve.access
    stages: dict[str, float] = field(default_factory=dict)
    degraded: list[str] = field(default_factory=list)
    cache: str = "miss"  # hit | stale | miss | precomputed
    ranked: Ranked = None  # type: ignore[assignment]  # set by the candidates stage
    entry: Entry | None = None  # the cached list's entry (None: a fresh run or the fallback)
    made: Candidates | None = None  # the candidate run of a miss
    pending: Pending | None = None
    done: Finished | None = None
    online: Online | None = None
    tag: str = ""  # the candidate cache's version tag: the model version, or that of an experiment arm's pipeline
    routed: Routed | None = None  # the experiment arm serving this request


class Batcher:
    """Dynamic batching of the cold path (as model servers batch inference): candidate runs of one pipeline that
    arrive while another of its runs is being made wait, and go together as one
    :meth:`Pipeline.candidates_batch <belong.pipeline.pipeline.Pipeline.candidates_batch>` (at most ``max_batch``):
    vectorised sources, one ranker prediction for the batch. Each request gets what :meth:`Pipeline.candidates`
    gives it alone (the batch's contract); a request that arrives alone runs alone, and a batch that fails is made
    again one request at a time, so one bad request fails only itself."""

    def __init__(self, executor: ThreadPoolExecutor, max_batch: int) -> None:
        self.executor = executor
        self.max_batch = max_batch
        self._queues: dict[int, list[tuple[Request, int, asyncio.Future]]] = {}
        self._running: set[int] = set()
        self.batches = 0
        self.runs = 0

    def submit(self, pipeline: Pipeline, request: Request, depth: int) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        key = id(pipeline)
        self._queues.setdefault(key, []).append((request, depth, fut))
        if key not in self._running:
            self._running.add(key)
            loop.call_soon(self._launch, pipeline)  # after the requests already read in this loop turn
        return fut

    def _launch(self, pipeline: Pipeline) -> None:
        key = id(pipeline)
        queue = self._queues.get(key, [])
        if not queue:
            self._running.discard(key)
            self._queues.pop(key, None)
            return
        batch, self._queues[key] = queue[: self.max_batch], queue[self.max_batch:]
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self.executor, self._make, pipeline, [(r, d) for r, d, _ in batch])
        self.batches += 1
        self.runs += len(batch)

        def deliver(f: asyncio.Future) -> None:
            failed = asyncio.CancelledError() if f.cancelled() else f.exception()
            results: list[Any] = [failed] * len(batch) if failed is not None else f.result()
            for (_, _, out), got in zip(batch, results, strict=True):
                if out.done():
                    continue
                if isinstance(got, BaseException):
                    out.set_exception(got)
                else:
                    out.set_result(got)
            self._launch(pipeline)  # those that came meanwhile

        done.add_done_callback(deliver)

    @staticmethod
    def _make(pipeline: Pipeline, asked: list[tuple[Request, int]]) -> list[Candidates | BaseException]:
        if len(asked) > 1 and len({d for _, d in asked}) == 1:
            try:
                return list(pipeline.candidates_batch([r for r, _ in asked], depth=asked[0][1]))
            except Exception:  # noqa: BLE001 - made again one at a time: the failure belongs to one request
                pass
        out: list[Candidates | BaseException] = []
        for r, d in asked:
            try:
                out.append(pipeline.candidates(r, depth=d))
            except Exception as exc:  # noqa: BLE001 - handed to that request's waiter
                out.append(exc)
        return out


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
        self.precomputed: PrecomputedLists | None = None  # stored lists read on a miss (belong.serve.precomputed)
        self.experiments: Router | None = None  # set by the service when the store holds experiments
        #: concurrent cold-path runs of one pipeline, made together (``BELONG_BATCH_MAX`` > 1)
        self.batcher = Batcher(self.executor, settings.batch_max) if settings.batch_max > 1 else None

    def model(self) -> ModelVersion:
        model = self.registry.active
        if model is None:
            raise NotReady
        return model

    async def recommend(self, surface: Surface, user_id: str, k: int, *, debug: bool = False,
                        new_user: NewUser | None = None, private: bool = False, arm: str | None = None) -> bytes:
        """The JSON body of one recommendation answer (see :class:`belong.serve.schemas.Recommendations`).
        ``private``: the caller may see the feature rows (an admin); ``debug`` (admin only, checked by the route)
        adds the trace. Otherwise items carry only :data:`belong.serve.access.PUBLIC_FEATURES`. ``arm`` (admin
        only, checked by the route): that arm of the user's experiment serves instead of their own, and the answer
        is not an exposure (a counterfactual view: the closed loop's truth, QA)."""
        started = time.perf_counter()
        model = self.model()
        request = Request(user_id, surface, k=k, new_user=new_user, seed=request_seed(model.state,
                                                                                     self.settings.request_seed))
        model.state.profile(request)  # unknown user -> UnknownIdError (404) before any work
        ctx = Context(model, model.pipelines[surface], request, debug, started, private=private or debug,
                      tag=model.version)
        if arm is not None and (self.experiments is None or not self.experiments.active):
            raise ValidationError("arm", f"{user_id!r} is in no running experiment on {SURFACE_NAME[surface]}")
        if self.experiments is not None and self.experiments.active:
            ctx.routed = await self.experiments.route(model, surface, user_id, self.registry.find, arm=arm)
            if ctx.routed is not None:
                ctx.pipeline, ctx.tag = ctx.routed.pipeline, ctx.routed.tag
                if ctx.routed.model is not None:  # an arm served by another loaded version
                    ctx.model = ctx.routed.model
        await self._candidates(ctx)
        if ctx.private:  # only an admin's answer shows the feature rows: nobody else's reads them
            self._read_features(ctx)
        try:
            self._finish(ctx)
        except BaseException:
            if ctx.pending is not None:  # collect the read in flight (its replies must leave the connection)
                self.features.finish(ctx.pending, [])
            raise
        self._collect_features(ctx)
        return self._respond(ctx)

    # ------------------------------------------------------------------------------------------- candidates
    def _start_run(self, ctx: Context) -> asyncio.Future:
        """One background candidate run per (version tag, surface, user); it fills the cache when it completes."""
        request, tag, pipeline = ctx.request, ctx.tag, ctx.pipeline
        key = (tag, request.surface, request.user_id)
        fut = self._inflight.get(key)
        if fut is not None:
            return fut
        loop = asyncio.get_running_loop()
        # stored lists are the model's own pipeline's (an experiment arm's pipeline has another tag)
        stored = self.precomputed if tag == ctx.model.version else None

        def run() -> Candidates:
            started = time.time()
            made = pipeline.candidates(request, depth=self.settings.cache_depth)
            if stored is not None:  # the live list refreshes the stored one (see belong.serve.precomputed)
                stored.put(tag, request.surface, request.user_id, made, made_at=started, explain=pipeline.explain)
            return made

        fut = self.batcher.submit(pipeline, request, self.settings.cache_depth) if self.batcher is not None \
            and stored is None else loop.run_in_executor(self.executor, run)

        def done(f: asyncio.Future) -> None:
            self._inflight.pop(key, None)
            if f.cancelled():
                return
            if f.exception() is not None:  # counted here: nobody may be waiting for this run any more
                self.metrics.errors.labels(f"source:{type(f.exception()).__name__}").inc()
                return
            self.cache.put(request.surface, request.user_id, Entry.of(tag, f.result()))

        fut.add_done_callback(done)
        self._inflight[key] = fut
        return fut

    async def _candidates(self, ctx: Context) -> None:
        request = ctx.request
        t0 = time.perf_counter()
        entry, fresh = self.cache.get(request.surface, request.user_id, ctx.tag)
        ctx.stages["cache"] = (time.perf_counter() - t0) * 1e3
        if entry is not None:
            ctx.cache = "hit" if fresh else "stale"
            self.metrics.cache_lookup(request.surface, ctx.cache)
            if not fresh:  # stale-while-revalidate: answer now, refresh in the background
                self._start_run(ctx)
            ctx.ranked, ctx.entry = entry.ranked, entry  # type: ignore[assignment]  # packed by the cache
            return
        self.metrics.cache_lookup(request.surface, "miss")
        t0 = time.perf_counter()
        if self.precomputed is not None and ctx.tag == ctx.model.version \
                and (key := (ctx.tag, request.surface, request.user_id)) not in self._inflight \
                and (entry := await self.precomputed.entry_async(*key)) is not None:
            self.cache.put(request.surface, request.user_id, entry)  # the stored list, as a cache entry
            ctx.cache = "precomputed"
            if entry.stale:  # made before the person's own events: answered, and refreshed (here, or by the job)
                ctx.cache = "stale"
                if entry.created == -math.inf:
                    self._start_run(ctx)
            ctx.ranked, ctx.entry = entry.ranked, entry  # type: ignore[assignment]
            ctx.stages["sources"] = (time.perf_counter() - t0) * 1e3
            return
        fut = self._start_run(ctx)
        try:
            made: Candidates = await asyncio.wait_for(asyncio.shield(fut), self.settings.budget_sources_ms / 1e3)
            # requests waiting on one run share its objects: marked shared, they are copied before any write
            ctx.made, ctx.ranked = made, RankedList(made.ranked, shared=True)
            return
        except TimeoutError:
            reason = "sources_timeout"
        except Exception:  # a failing source or dependency degrades the answer, never fails it (counted in done)
            reason = "sources_error"
        finally:
            ctx.stages["sources"] = (time.perf_counter() - t0) * 1e3
        self._fallback(ctx, reason)

    def _fallback(self, ctx: Context, reason: str) -> None:
        """Answer from the model's popular list; nothing of a cached list is reused."""
        ctx.degraded.append(reason)
        self.metrics.fallbacks.labels(f"{reason}:popular").inc()
        ctx.ranked, ctx.entry, ctx.made = ctx.model.fallback[ctx.request.surface], None, None

    # ------------------------------------------------------------------------------------------- features
    def _read_features(self, ctx: Context) -> None:
        """Send the online-feature read of the list's head now; Redis answers while the rules run."""
        t0 = time.perf_counter()
        request = ctx.request
        ids = ctx.pipeline.item_ids()
        head = ctx.ranked.head(request.k + max(4, request.k // 4))
        ctx.pending = self.features.start(request.surface, request.user_id, [ids[i] for i in head])
        ctx.stages["features"] = (time.perf_counter() - t0) * 1e3

    def _collect_features(self, ctx: Context) -> None:
        assert ctx.done is not None
        if ctx.pending is None:  # a public answer: no feature read was sent (see recommend)
            return
        t0 = time.perf_counter()
        memo = ctx.entry.feature_rows if ctx.entry is not None else None
        # the assembled rows are shown to admin callers only: the others' answers need just the rows' times
        ctx.online, why = self.features.finish(ctx.pending, [it.id for it in ctx.done.items], memo,
                                               assemble=ctx.private)
        if why is not None:
            ctx.degraded.append(why)
            self.metrics.fallbacks.labels(why).inc()
        ctx.stages["features"] += (time.perf_counter() - t0) * 1e3

    # ------------------------------------------------------------------------------------------- finish
    def _finish(self, ctx: Context) -> None:
        """Live rules -> select -> hydrate -> explain (the pipeline's), on the cached list's memo."""
        request = ctx.request
        memo = ctx.entry.memo if ctx.entry is not None else None
        try:
            ctx.done = ctx.pipeline.finish(request, ctx.ranked, all_rules=ctx.debug, memo=memo, stage_ms=ctx.stages)
        except Exception as exc:  # the state changed under a background run: serve the popular list instead
            self.metrics.errors.labels(f"rules:{type(exc).__name__}").inc()
            self._fallback(ctx, "rules_error")
            ctx.done = ctx.pipeline.finish(request, ctx.ranked, all_rules=ctx.debug, stage_ms=ctx.stages)

    # ------------------------------------------------------------------------------------------- respond
    def _items(self, ctx: Context) -> list | orjson.Fragment:
        """The answer's items; their serialised form is reused while everything they are made of is equal (the
        same chosen objects hydrated at the same revisions and the stored rows' times — the bytes would be the
        same)."""
        done, online, entry = ctx.done, ctx.online, ctx.entry
        assert done is not None
        key: tuple | None = None
        # a public answer shows no feature rows: its bytes depend on the chosen objects alone; an admin's on the
        # rows' times too
        rows_known = (online is not None and online.keys is not None) if ctx.private else online is None
        if entry is not None and rows_known and not ctx.debug:
            if done.hydration is not None:  # the same chosen objects, hydrated at these revisions
                key = (done.hydration, online and online.keys)
            else:
                key = (tuple(it.index for it in done.items), tuple(it.score for it in done.items),
                       tuple(tuple(it.features.items()) for it in done.items), online and online.keys)
            key = (ctx.private, key)
            last = entry.serialized
            if last is not None and last.ranked is ctx.ranked and last.key == key \
                    and (done.hydration is None or last.chosen is done.chosen):
                return orjson.Fragment(last.body)
        items = []
        private = ctx.private
        for it in done.items:
            if not private:
                row = public_features(it.features)
            else:
                row = it.features if online is None else it.features | online.items[it.rank - 1]
            items.append({"rank": it.rank, "position": it.rank - 1, "id": it.id, "name": it.name,
                          "score": round(it.score, 6), "source": it.sources[0], "sources": it.sources,
                          "explanation": it.explanation,
                          "propensity": it.features.get("propensity", 1.0),  # < 1: an exploration pick
                          "features": row})
        if key is not None and entry is not None:
            body = orjson.dumps(items)
            entry.serialized = Serialized(key, body, ctx.ranked, done.chosen)
            return orjson.Fragment(body)
        return items

    def _respond(self, ctx: Context) -> bytes:
        t0 = time.perf_counter()
        request, online = ctx.request, ctx.online
        body: dict[str, Any] = {
            "request_id": new_request_id(), "surface": SURFACE_NAME[request.surface],
            "user_id": request.user_id, "model_version": ctx.model.version, "k": request.k,
            # the same in every row: sent once; the requester's own profile row, for admin callers only
            "user_features": online.user if online is not None and ctx.private else {},
            "items": self._items(ctx), "degraded": bool(ctx.degraded), "degraded_reasons": ctx.degraded,
            "cache": ctx.cache, "experiments": [],
        }
        if ctx.routed is not None:
            body["experiments"] = [{"name": ctx.routed.name, "arm": ctx.routed.arm}]
            if ctx.done is not None and ctx.done.items and self.experiments is not None \
                    and not ctx.routed.counterfactual:  # a list was served to the user's own arm
                self.experiments.exposed(ctx.routed, body["request_id"], request.user_id, body["surface"])
        t1 = time.perf_counter()
        ctx.stages["respond"] = (t1 - t0) * 1e3
        if ctx.debug:
            body["debug"] = self._debug(ctx, (t1 - ctx.started) * 1e3)
        out = orjson.dumps(body)
        name = SURFACE_NAME[request.surface]
        self.metrics.observe_stages(name, ctx.stages)
        self.metrics.observe_request(name, time.perf_counter() - ctx.started)
        return out

    @staticmethod
    def _debug(ctx: Context, total_ms: float) -> dict[str, Any]:
        """Stage timings, the candidate run's figures and every removal (at the run and now), by item id."""
        item_id = ctx.pipeline.item_id
        entry, made = ctx.entry, ctx.made
        if made is not None:
            source_ms, counts, n = made.source_ms, made.source_counts, made.n_candidates
            at_run = [(r.item, r.filter, r.reason) for r in made.removed]
        elif entry is not None:
            source_ms, counts, n, at_run = entry.source_ms, entry.source_counts, entry.n_candidates, list(entry.removed)
        else:
            source_ms, counts, n, at_run = {}, {}, len(ctx.ranked), []
        assert ctx.done is not None
        return {
            "stage_ms": {s: round(v, 3) for s, v in ctx.stages.items()} | {"total": round(total_ms, 3)},
            "source_ms": {s: round(v, 3) for s, v in source_ms.items()}, "source_counts": counts,
            "candidates": n, "fallback": "popular" if (entry is None and made is None) else None,
            "removed": [{"id": item_id(i), "filter": f, "reason": r, "when": "sources"} for i, f, r in at_run]
            + [{"id": item_id(r.item), "filter": r.filter, "reason": r.reason, "when": "request"}
               for r in ctx.done.removed],
        }

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.features.close()
        if self.precomputed is not None:
            self.precomputed.close()
