"""``belong train --engine ray``: the same training, with its two batch parts on Ray (installed through
:mod:`belong.ranking.runners` for the duration of the job).

* Training lists: the builder's context (the candidate stage fitted on the validation cut, the cut's state, the
  held-out labels) is put in the object store once; a Ray Data pipeline maps the chunks of user indices to their
  lists with a pool of actors (:class:`ChunkLists`, which fetch the context once), in order — the same lists as in
  process.
* The order model: Ray Train's ``LightGBMTrainer`` with ``workers`` workers. Each worker takes a contiguous share
  of *whole* lists (a ranking objective needs each query group on one worker), merges
  ``ray.train.lightgbm.get_network_params()`` into the parameters (without it each worker would silently train on
  its shard alone), and validates on the whole validation part, so that every worker sees the same metric and
  stops early at the same round. With one worker the model is the in-process one.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from belong.batch.engine import Engine, map_blocks, session
from belong.errors import ValidationError


class Part:
    """One chunk's lists, opaque to Ray Data (kept as a Python object, not converted to Arrow)."""

    def __init__(self, value: dict) -> None:
        self.value = value


def _objects(items: list) -> np.ndarray:
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


class ChunkLists:
    """The training lists of one chunk of user indices per row (a Ray Data callable class)."""

    def __init__(self, context: list) -> None:
        import ray

        self.context = ray.get(context[0])  # wrapped in a list: a bare ObjectRef would be resolved on the way

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        from belong.ranking.dataset import lists_of

        parts = [lists_of(self.context, list(map(int, users))) for users in batch["users"]]
        return {"index": batch["index"], "part": _objects([Part(p) for p in parts])}


def ray_lists_runner(engine: Engine) -> Callable:
    """A :data:`~belong.ranking.runners.ListsRunner` mapping chunks over ``engine.workers`` Ray actors."""

    def run(context: tuple, chunks: list[list[int]], progress: Callable[[int, int], None] | None) -> list[dict]:
        import ray
        import ray.data

        ref = ray.put(context)
        total = sum(len(c) for c in chunks)
        ds = ray.data.from_items([{"index": i, "users": np.asarray(c, np.int64)} for i, c in enumerate(chunks)],
                                 override_num_blocks=max(1, min(len(chunks), 4 * engine.workers)))
        mapped = map_blocks(ds, ChunkLists, {"context": [ref]}, engine, batch_size=1, batch_format="numpy")
        parts: list[dict] = [{}] * len(chunks)
        done = 0
        for row in mapped.iter_rows():
            i = int(row["index"])
            parts[i] = row["part"].value
            done += len(chunks[i])
            if progress is not None:
                progress(done, total)
        del ref
        return parts

    return run


def _train_loop(config: dict[str, Any]) -> None:
    """Ray Train's per-worker loop: this worker's share of whole lists, LightGBM in data-parallel mode."""
    import lightgbm as lgb
    import ray
    import ray.train
    from ray.train import Checkpoint
    from ray.train.lightgbm import get_network_params

    from belong.ranking.ranker import EARLY_STOPPING

    ctx = ray.train.get_context()
    rank, size = ctx.get_world_rank(), ctx.get_world_size()
    (X, y, g), (Xv, yv, gv) = ray.get(config["data"][0])
    lo, hi = rank * g.size // size, (rank + 1) * g.size // size  # whole lists: a contiguous share of the groups
    off = np.r_[0, np.cumsum(g)]
    rows = slice(int(off[lo]), int(off[hi]))
    params = dict(config["params"])
    params.update(get_network_params())  # the worker group: else each worker trains on its shard alone
    params["num_threads"] = config["threads"]
    if size > 1:
        params.update({"tree_learner": "data_parallel", "pre_partition": True})
    dtr = lgb.Dataset(X[rows], y[rows], group=g[lo:hi], feature_name=config["names"], free_raw_data=False)
    dva = lgb.Dataset(Xv, yv, group=gv, reference=dtr)  # every worker: the whole validation part, same metric
    booster = lgb.train(params, dtr, config["rounds"], valid_sets=[dva],
                        callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])
    metrics = {"best_iteration": int(booster.best_iteration or 0), "rows": int(rows.stop - rows.start),
               "lists": int(hi - lo)}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            booster.save_model(str(Path(tmp) / "model.txt"))  # as Ranker.save: up to the best iteration
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def ray_order_trainer(engine: Engine, storage: str | Path, report: dict[str, Any] | None = None) -> Callable:
    """A :data:`~belong.ranking.runners.OrderTrainer` running Ray Train's ``LightGBMTrainer`` with
    ``engine.workers`` workers (run files under ``storage``); each run's figures are appended to
    ``report["order_runs"]``."""

    def train(params: dict[str, Any], train: tuple, valid: tuple, rounds: int, names: list[str]) -> Any:
        import lightgbm as lgb
        import ray
        from ray.train import RunConfig, ScalingConfig
        from ray.train.lightgbm import LightGBMTrainer

        if train[2].size < engine.workers:
            raise ValidationError("ray_workers", f"{engine.workers} workers for {train[2].size} training lists")
        t0 = time.perf_counter()
        ref = ray.put((train, valid))
        trainer = LightGBMTrainer(
            _train_loop,
            train_loop_config={"params": params, "data": [ref], "rounds": rounds, "names": list(names),
                               "threads": 1},
            scaling_config=ScalingConfig(num_workers=engine.workers, resources_per_worker={"CPU": 1}),
            # Ray Train reads a storage path as a URI: a relative one ("work/…") is refused (no scheme)
            run_config=RunConfig(storage_path=str(Path(storage).resolve()), name=f"order-{time.time_ns()}"),
        )
        result = trainer.fit()
        if result.checkpoint is None:
            raise RuntimeError(f"LightGBMTrainer returned no model: {result.error}")
        with result.checkpoint.as_directory() as where:
            booster = lgb.Booster(model_file=str(Path(where) / "model.txt"))
        best = int((result.metrics or {}).get("best_iteration", 0))
        booster.best_iteration = best or booster.current_iteration()
        if report is not None:
            report.setdefault("order_runs", []).append(
                {"workers": engine.workers, "best_iteration": booster.best_iteration,
                 "seconds": round(time.perf_counter() - t0, 3)})
        del ref
        return booster

    return train


def train(store: str, out: Path, names: Any, engine: Engine, *, progress: Any = None,
          tune_budget: float | None = None, retune: bool = False, scratch: str | Path | None = None,
          snapshot: bool = True) -> dict[str, Any]:
    """:func:`belong.training.train.train` on ``engine`` (in process: exactly that); the manifest gains
    ``engine`` (the engine, the cluster's start time, the LightGBMTrainer runs)."""
    from belong.ranking.runners import installed
    from belong.training.train import train as train_here

    if not engine.is_ray:
        return train_here(store, out, names, progress, tune_budget=tune_budget, retune=retune, snapshot=snapshot)
    report: dict[str, Any] = engine.describe()
    with tempfile.TemporaryDirectory(prefix="belong-ray-train-", dir=scratch) as storage:
        with session(engine) as cluster:
            with installed(lists=ray_lists_runner(engine), order=ray_order_trainer(engine, storage, report)):
                result = train_here(store, out, names, progress, tune_budget=tune_budget, retune=retune,
                                    snapshot=snapshot)
    report["cluster_start_seconds"] = cluster.get("start_seconds", 0.0)
    return {**result, "engine": report}
