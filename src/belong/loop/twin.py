"""The closed loop in process, served as the HTTP mode's server serves (``belong loop run --mode inprocess``): the
same lists for the same seed, without the transport.

:class:`TwinBackend` keeps what ``belong serve`` keeps, and changes it the same way, in the same order:

* an embedded store holding the simulated world and everything posted since (events, 1,000 a batch, then the
  impressions of the day's lists as ``POST /v1/impressions/batch`` makes them: the same event ids and times);
* ``retrain``: :func:`belong.training.train.train` on that store (what ``belong train`` runs), the artifact loaded
  onto a state read from the log (:func:`belong.state.from_store`, the server's read: the same index order), every
  arm built from the trained surface by :func:`belong.experiments.arms.fit_arm` (as the server builds an
  experiment's arms);
* ``serve``: the engine's cold path without the candidate cache, batched (:meth:`Pipeline.candidates_batch
  <belong.pipeline.pipeline.Pipeline.candidates_batch>` at the server's ``cache_depth``, each request's answer the
  one it gets alone, then :meth:`~belong.pipeline.pipeline.Pipeline.finish` on the list as shared), with the
  request seed the state's day (:func:`belong.serve.engine.request_seed`, ``BELONG_REQUEST_SEED=day``);
* ``record``: each batch folded into the live state by :func:`belong.serve.versions.fold` (clock = event time).

The direct backend (:class:`belong.loop.backend.InProcessBackend`, ``--mode direct``) serves on the loop's own
state and refits in place: faster, but its lists are not the HTTP mode's (docs/LOOP.md).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from belong.domain import Event, Surface
from belong.loop.backend import Impression, Slate, slate_of
from belong.loop.http import LISTS_PER_POST, fold_as_posted, load_as_served, trained_surface
from belong.loop.scenario import Scenario, surface_spec
from belong.pipeline import Request
from belong.pipeline.types import RankedList

CACHE_DEPTH = 200  # belong serve's default BELONG_CACHE_DEPTH: the ranked list the rules then pick from


class TwinBackend:
    """See the module docstring. ``workdir``: where the store and artifacts go (default: a temporary directory,
    removed by :meth:`close`)."""

    def __init__(self, sc: Scenario, world: Any, uids: list[str], *, workdir: str | Path | None = None,
                 batch: int = 512, progress: Any = None) -> None:
        from belong.datasets import write_world
        from belong.eventlog import open_store

        self.sc = sc
        self.uids = uids
        self.k = sc.k
        self.batch = batch
        self.say = progress or (lambda _m: None)
        self.keep = workdir is not None
        self.dir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="belong-loop-twin-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.store_path = self.dir / "store"
        self.models = self.store_path / "models"
        self.specs = [surface_spec(sc, a) for a in sc.arms]
        self.trained = trained_surface(self.specs)
        t0 = time.perf_counter()
        self.store = open_store(self.store_path)
        write_world(self.store, world, progress=False)
        self.setup = {"write_store_s": round(time.perf_counter() - t0, 3)}
        self.state: Any = None
        self.pipelines: list[Any] = [None] * len(self.specs)
        self.comm_sim = np.zeros(0, np.int64)
        self.counts = {"served": 0, "events": 0, "impressions": 0}

    def retrain(self, day: int, state: Any = None) -> dict[str, Any]:
        """``belong train`` on the log so far, loaded as the server loads it, every arm built as the server builds
        an experiment's arms (the loop's own ``state`` is not read)."""
        from belong.training.train import train

        t0 = time.perf_counter()
        made = train(str(self.store_path), self.models, [self.specs[self.trained]], snapshot=False)
        t1 = time.perf_counter()
        self.pipelines, self.state = load_as_served(self.store_path, Path(made["path"]), self.specs)
        self.comm_sim = np.array([int(c[1:]) for c in self.state.communities.ids], np.int64)
        t2 = time.perf_counter()
        self.say(f"day {day}: trained {made['version']} in {t1 - t0:.1f}s (in process)")
        return {"day": day, "version": made["version"], "train_s": round(t1 - t0, 3), "load_s": round(t2 - t1, 3),
                "seconds": round(t2 - t0, 3)}

    def serve(self, arm: int, users: list[int], day: int = 0) -> list[Slate]:
        from belong.serve.engine import request_seed

        pipe = self.pipelines[arm]
        seed = request_seed(self.state, None)
        out: list[Slate] = []
        for lo in range(0, len(users), self.batch):
            chunk = users[lo: lo + self.batch]
            reqs = [Request(self.uids[u], Surface.COMMUNITIES, k=self.k, seed=seed) for u in chunk]
            for u, r, made in zip(chunk, reqs, pipe.candidates_batch(reqs, depth=CACHE_DEPTH), strict=True):
                chosen = pipe.finish(r, RankedList(made.ranked, shared=True)).chosen
                out.append(slate_of(chosen, self.comm_sim, self.uids[u], arm, day))
        self.counts["served"] += len(users)
        return out

    def record(self, events: list[Event], impressions: list[Impression]) -> None:
        """What the HTTP mode posts, stored and folded in the same batches."""
        from belong.serve.batches import impression_events
        from belong.serve.schemas import ImpressionBatch

        fold_as_posted(self.state, events, append=lambda chunk: list(self.store.append(chunk).inserted))
        shown = [i for i in impressions if i.items]
        per = max(1, min(LISTS_PER_POST, 10_000 // max((len(i.items) for i in shown), default=1)))
        for lo in range(0, len(shown), per):
            made = [e for imp in shown[lo: lo + per] for e in impression_events(ImpressionBatch(**imp.body()))]
            self.store.append(made)  # impressions change no live state (they train the ranker)
        self.counts["events"] += len(events)
        self.counts["impressions"] += sum(len(i.items) for i in impressions)

    #: serves as the engine does (the off-policy re-runs ask the same way: belong.loop.offpolicy)
    like_server = True

    def stats(self) -> dict[str, Any]:
        return {"mode": "inprocess", **self.counts}

    def close(self) -> None:
        self.pipelines = [None] * len(self.specs)
        self.store.close()
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def factory(workdir: str | Path | None = None) -> Any:
    """A backend factory for :func:`belong.loop.runner.run` (one store per run of each unit of randomisation)."""

    def make(sc: Scenario, loop: Any) -> TwinBackend:
        where = Path(workdir) / f"{sc.name}-{sc.unit}" if workdir is not None else None
        return TwinBackend(sc, loop.world, loop.uids, workdir=where, progress=loop.say)

    return make
