"""Prometheus metrics of one app (its own registry, so several apps in one process never collide).

* ``belong_request_seconds{route,surface}`` — request latency histogram (recommendations per surface).
* ``belong_stage_seconds{surface,stage}`` — latency of each stage of a recommendation (cache, sources, rules,
  select, hydrate, features, respond).
* ``belong_candidate_cache_total{surface,result}`` — hit / miss / stale; hit rate = hit / (hit + miss + stale).
* ``belong_fallbacks_total{reason}`` — degraded answers by reason (sources_timeout, sources_error,
  features_unavailable, ...).
* ``belong_errors_total{kind}`` — errors answered as 4xx/5xx or swallowed into a degraded answer.
* ``belong_events_total{result}`` — events accepted / duplicate / rejected through the API.
* ``belong_active_model{version}`` — 1 for the active model version.
* ``belong_feature_rows_total{entity,result}`` — in-process feature row lookups (hit / miss) and
  ``belong_feature_invalidations_total`` — rows Redis reported changed (see :mod:`belong.serve.rowcache`).
* ``belong_gc_collections_total{generation}``, ``belong_heap_held``, ``belong_heap_sweeps_total``,
  ``belong_heap_sweep_seconds_total``, ``belong_heap_swept_objects_total`` — the garbage collector and the heap keeper
  (:mod:`belong.serve.heap`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from belong.domain import SURFACE_NAME

_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STAGES = ("cache", "sources", "rules", "select", "hydrate", "features", "respond")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_seconds = Histogram("belong_request_seconds", "Request latency", ["route", "surface"],
                                         buckets=_BUCKETS, registry=r)
        self.stage_seconds = Histogram("belong_stage_seconds", "Latency of one stage of a recommendation",
                                       ["surface", "stage"], buckets=_BUCKETS, registry=r)
        self.cache = Counter("belong_candidate_cache", "Candidate cache lookups", ["surface", "result"], registry=r)
        self.fallbacks = Counter("belong_fallbacks", "Degraded answers by reason", ["reason"], registry=r)
        self.errors = Counter("belong_errors", "Errors by kind", ["kind"], registry=r)
        self.events = Counter("belong_events", "Events received through the API", ["result"], registry=r)
        self.active_model = Gauge("belong_active_model", "1 for the active model version", ["version"], registry=r)
        # label children resolved once: the hot path only calls observe()/inc()
        self._stage = {(s, st): self.stage_seconds.labels(s, st) for s in ("communities", "people", "content")
                       for st in STAGES}
        self._req = {s: self.request_seconds.labels("recommendations", s) for s in ("communities", "people", "content")}
        self._cache: dict = {}

    def cache_lookup(self, surface, result: str) -> None:
        """Count one candidate cache lookup (``surface``: a :class:`~belong.domain.Surface`)."""
        child = self._cache.get((surface, result))
        if child is None:
            child = self._cache[(surface, result)] = self.cache.labels(SURFACE_NAME[surface], result)
        child.inc()

    def watch_rows(self, rows) -> None:
        """Export a :class:`~belong.serve.rowcache.RowCache`'s counters (read at scrape time: no cost per lookup)."""
        self.registry.register(_RowCacheCollector(rows))

    def watch_heap(self, keeper) -> None:
        """Export a :class:`~belong.serve.heap.HeapKeeper`'s counters (read at scrape time)."""
        self.registry.register(_HeapCollector(keeper))

    def observe_stages(self, surface: str, stage_ms: dict[str, float]) -> None:
        for stage, ms in stage_ms.items():
            child = self._stage.get((surface, stage))
            if child is not None:
                child.observe(ms / 1e3)

    def observe_request(self, surface: str, seconds: float) -> None:
        self._req[surface].observe(seconds)

    def set_active(self, version: str, all_versions: list[str]) -> None:
        for v in all_versions:
            self.active_model.labels(v).set(1.0 if v == version else 0.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _RowCacheCollector:
    def __init__(self, rows) -> None:
        self.rows = rows

    def collect(self):
        fam = CounterMetricFamily("belong_feature_rows", "In-process feature row lookups", labels=["entity", "result"])
        for entity, n in self.rows.hits.items():
            fam.add_metric([entity, "hit"], n)
        for entity, n in self.rows.misses.items():
            fam.add_metric([entity, "miss"], n)
        yield fam
        yield CounterMetricFamily("belong_feature_invalidations", "Feature rows Redis reported changed",
                                  value=self.rows.invalidations)


class _HeapCollector:
    def __init__(self, keeper) -> None:
        self.keeper = keeper

    def collect(self):
        d = self.keeper.as_dict()
        fam = CounterMetricFamily("belong_gc_collections", "Garbage collections by generation",
                                  labels=["generation"])
        for gen, n in enumerate(d["collections"]):
            fam.add_metric([str(gen)], n)
        yield fam
        yield GaugeMetricFamily("belong_heap_held", "1 while automatic full collections are held off",
                                value=1.0 if d["held"] else 0.0)
        yield CounterMetricFamily("belong_heap_sweeps", "Heap keeper sweeps (full collections)", value=d["sweeps"])
        yield CounterMetricFamily("belong_heap_sweep_seconds", "Time spent in heap keeper sweeps",
                                  value=d["sweep_seconds"])
        yield CounterMetricFamily("belong_heap_swept_objects", "Unreachable objects the sweeps reclaimed",
                                  value=d["swept_objects"])
