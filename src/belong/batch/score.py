"""Batch scoring: every active person's top-``k`` of one surface, ranked by the newest ``belong train`` artifact
(:meth:`~belong.pipeline.pipeline.Pipeline.rank_batch`), written to one Parquet file with the columns ``user``,
``rank`` (1-based), ``item``, ``score``.

The work is one function of a block of people (:class:`BlockScorer`, which loads the fitted pipeline once per
process): the ``inprocess`` engine calls it block after block; the ``ray`` engine maps it over the same blocks as a
Ray Data pipeline (``from_arrow`` → ``map_batches`` with a pool of ``workers`` actors, order preserved), so both
write the same rows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from belong.batch.engine import Engine, blocks, map_blocks, session
from belong.batch.loaded import artifact_of, load
from belong.domain import EntityStatus, Surface, parse_enum
from belong.errors import ValidationError
from belong.pipeline.types import MAX_K, Request
from belong.training.artifact import read_manifest

SCHEMA = pa.schema([("user", pa.string()), ("rank", pa.int32()), ("item", pa.string()), ("score", pa.float64())])
BLOCK = 2_000  # people per Ray Data block
BATCH = 256  # people per rank_batch call


class BlockScorer:
    """Top-``k`` rows of a block of people (a Ray Data callable class: the constructor loads the artifact)."""

    def __init__(self, store: str, artifact: str, snapshot: str | None, surface: str, k: int) -> None:
        self.model = load(store, artifact, snapshot)
        self.surface = Surface(surface)
        self.pipeline = self.model.pipelines[self.surface]
        self.k = k

    def __call__(self, batch: pa.Table) -> pa.Table:
        users = batch.column("user").to_pylist()
        out_u: list[str] = []
        out_r: list[int] = []
        out_i: list[str] = []
        out_s: list[float] = []
        for i in range(0, len(users), BATCH):
            part = users[i:i + BATCH]
            answers = self.pipeline.rank_batch([Request(u, self.surface, k=self.k, explain=False) for u in part])
            for user, answer in zip(part, answers, strict=True):
                for rank, (item, score) in enumerate(answer, 1):
                    out_u.append(user)
                    out_r.append(rank)
                    out_i.append(self.pipeline.item_id(item))
                    out_s.append(float(score))
        return pa.table({"user": pa.array(out_u, pa.string()), "rank": pa.array(out_r, pa.int32()),
                         "item": pa.array(out_i, pa.string()), "score": pa.array(out_s, pa.float64())},
                        schema=SCHEMA)


def active_users(store: str, limit: int | None = None) -> list[str]:
    """The ids of the store's active people, in the store's order (the first ``limit``)."""
    import pyarrow.compute as pc

    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        users = st.users()
    ids = users.filter(pc.equal(users.column("status"), EntityStatus.ACTIVE.value)).column("id").to_pylist()
    return ids[:limit] if limit is not None else ids


def _ray_tables(engine: Engine, user_blocks: list[list[str]], fn: type, kwargs: dict[str, Any]) -> Iterator[pa.Table]:
    """``fn(**kwargs)`` mapped over the blocks by a pool of ``engine.workers`` Ray actors, in block order."""
    import ray.data

    ds = ray.data.from_arrow([pa.table({"user": pa.array(b, pa.string())}) for b in user_blocks])
    mapped = map_blocks(ds, fn, kwargs, engine, batch_size=None, batch_format="pyarrow", zero_copy_batch=True)
    yield from mapped.iter_batches(batch_size=None, batch_format="pyarrow")


def score(store: str, out: str | Path, engine: Engine, *, surface: str = "communities", k: int = 20,
          models_dir: str | Path | None = None, limit: int | None = None, block: int = BLOCK,
          progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score every active person (the first ``limit``) with the newest artifact; write ``out`` (Parquet); returns
    the job's figures."""
    surf = parse_enum(surface, Surface, "surface")
    if not 1 <= k <= MAX_K:
        raise ValidationError("k", f"must be in 1..{MAX_K}, got {k}")
    if block < 1:
        raise ValidationError("block", f"must be >= 1, got {block}")
    artifact, snapshot = artifact_of(store, models_dir)
    kwargs: dict[str, Any] = {"store": str(store), "artifact": str(artifact),
                              "snapshot": str(snapshot) if snapshot else None, "surface": surf.value, "k": k}
    if surf.value not in read_manifest(artifact).get("surfaces", {}):
        raise ValidationError("surface", f"the artifact {artifact.name} has no {surf.value} surface")
    users = active_users(store, limit)
    user_blocks = blocks(users, block, engine.workers if engine.is_ray else 1)
    rows = done = 0
    load_s = 0.0
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with session(engine) as cluster:
        t1 = time.perf_counter()
        if engine.is_ray:  # each worker loads the artifact (inside the timed run)
            tables: Iterator[pa.Table] = _ray_tables(engine, user_blocks, BlockScorer, kwargs)
        else:
            here = BlockScorer(**kwargs)
            load_s = time.perf_counter() - t1
            tables = (here(pa.table({"user": pa.array(b, pa.string())})) for b in user_blocks)
        with pq.ParquetWriter(str(out), SCHEMA) as writer:
            for table in tables:
                writer.write_table(table)
                rows += table.num_rows
                done += int(np.unique(table.column("user").to_numpy(zero_copy_only=False)).size)
                if progress:
                    progress(done, len(users))
        run_s = time.perf_counter() - t1
    # load_seconds: in process (inside "seconds"); each Ray worker loads its own copy inside "seconds" too
    return {"job": "score", **engine.describe(), "surface": surf.value, "k": k, "users": len(users), "rows": rows,
            "version": artifact.name, "out": str(out), "load_seconds": round(load_s, 3),
            "cluster_start_seconds": cluster.get("start_seconds", 0.0), "seconds": round(run_s, 3),
            "ms_per_user": round(run_s / max(len(users), 1) * 1e3, 4)}
