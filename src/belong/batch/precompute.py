"""``belong candidates precompute --engine ray``: the job of :func:`belong.serve.precomputed.precompute` as a Ray
Data pipeline. Blocks of active people are mapped by a pool of actors (:class:`BlockLists`), each of which loads
the newest artifact once and writes the packed lists of its block to Redis under the same keys and in the same
format as the in-process job; the driver writes the job's ``meta``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from belong.batch.engine import Engine, blocks, map_blocks, session
from belong.batch.loaded import artifact_of, load
from belong.batch.score import active_users
from belong.domain import SURFACE_NAME, Surface
from belong.errors import ValidationError
from belong.pipeline.types import Request
from belong.serve.cache import Packed
from belong.serve.precomputed import DEFAULT_PREFIX, PrecomputedLists, _encode
from belong.training.artifact import read_manifest

BLOCK = 1_000


class BlockLists:
    """Candidate lists of a block of people, stored in Redis (a Ray Data callable class)."""

    def __init__(self, store: str, artifact: str, snapshot: str | None, redis_url: str, prefix: str,
                 surfaces: list[str], depth: int) -> None:
        import redis

        self.model = load(store, artifact, snapshot)
        self.surfaces = [Surface(s) for s in surfaces]
        self.client = redis.Redis.from_url(redis_url)
        self.lists = PrecomputedLists(self.client, prefix, registry=None)
        self.depth = depth

    def __call__(self, batch: pa.Table) -> pa.Table:
        users = batch.column("user").to_pylist()
        n = 0
        for surface in self.surfaces:
            pipeline = self.model.pipelines[surface]
            pipe = self.client.pipeline(transaction=False)
            for user in users:
                made = pipeline.candidates(Request(user, surface, k=20), depth=self.depth)
                pipe.set(self.lists.key(self.model.version, surface, user),
                         _encode(time.time(), Packed(made.ranked).rows, pipeline.explain))
                n += 1
            pipe.execute()
        return pa.table({"lists": pa.array([n], pa.int64()), "people": pa.array([len(users)], pa.int64())})


def precompute(store: str, redis_url: str, engine: Engine, *, models_dir: str | Path | None = None,
               prefix: str = DEFAULT_PREFIX, surfaces: list[Surface] | None = None, limit: int | None = None,
               depth: int = 200, block: int = BLOCK, users: list[str] | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Every active person's candidate lists on the Ray engine; returns the job's figures (also stored as
    ``PREFIX<version>:meta``, as the in-process job does)."""
    import ray.data
    import redis

    if block < 1:
        raise ValidationError("block", f"must be >= 1, got {block}")
    artifact, snapshot = artifact_of(store, models_dir)
    manifest = read_manifest(artifact)
    version = str(manifest["version"])
    known = [Surface(s) for s in manifest.get("surfaces", {})]
    chosen = surfaces or known
    missing = [s.value for s in chosen if s not in known]
    if missing:
        raise ValidationError("surface", f"the artifact {artifact.name} has no {missing[0]} surface")
    active = active_users(store)
    if users is not None:
        known_active = set(active)
        if bad := [u for u in users if u not in known_active]:
            raise ValidationError("users", f"{len(bad)} not active people of the store, e.g. {bad[:3]}")
        active = list(dict.fromkeys(users))
    people = active[:limit] if limit is not None else active
    total = len(people) * len(chosen)
    kwargs = {"store": str(store), "artifact": str(artifact), "snapshot": str(snapshot) if snapshot else None,
              "redis_url": redis_url, "prefix": prefix, "surfaces": [s.value for s in chosen], "depth": depth}
    done = 0
    with session(engine) as cluster:
        t1 = time.perf_counter()
        parts = blocks(people, block, engine.workers)
        ds = ray.data.from_arrow([pa.table({"user": pa.array(b, pa.string())}) for b in parts])
        mapped = map_blocks(ds, BlockLists, kwargs, engine, batch_size=None, batch_format="pyarrow",
                            zero_copy_batch=True)
        for table in mapped.iter_batches(batch_size=None, batch_format="pyarrow"):
            done += int(np.asarray(table["lists"]).sum())
            if progress:
                progress(done, total)
        run_s = time.perf_counter() - t1
    meta = {"version": version, "made_at": time.time(), "users": len(people),
            "scope": "every active person" if users is None else "the people named",
            "surfaces": [SURFACE_NAME[s] for s in chosen], "lists": done, **engine.describe(),
            "cluster_start_seconds": cluster.get("start_seconds", 0.0), "seconds": round(run_s, 1),
            "ms_per_list": round(run_s / max(done, 1) * 1e3, 3)}
    redis.Redis.from_url(redis_url).set(f"{prefix}{version}:meta", orjson.dumps(meta))
    return meta
