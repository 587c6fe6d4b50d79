"""Where a batch job runs: ``inprocess`` (the default: this process, and its forks where a job forks) or ``ray``
(Ray Data pipelines over blocks of people on a local Ray cluster the command starts, or on a running cluster at
``--ray-address``; LightGBM through Ray Train's ``LightGBMTrainer``).

:func:`session` starts (or connects to) the cluster for a job and stops what it started. A local cluster gets
``workers`` CPUs (one per Ray worker), no dashboard, a small object store (this is a shared machine), and token
authentication off (``RAY_AUTH_MODE=disabled``: Ray 2.60 turns it on and would write a token under ``~/.ray``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from belong.errors import ValidationError

ENGINES = ("inprocess", "ray")
OBJECT_STORE_MB = 768


@dataclass(frozen=True)
class Engine:
    """A batch engine: ``name`` (``inprocess`` | ``ray``), Ray ``workers`` (processes working on the blocks, and
    Ray Train workers), ``address`` of a running cluster (None: start a local one)."""

    name: str = "inprocess"
    workers: int = 1
    address: str | None = None
    object_store_mb: int = OBJECT_STORE_MB

    @property
    def is_ray(self) -> bool:
        return self.name == "ray"

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"engine": self.name}
        if self.is_ray:
            out.update({"ray_workers": self.workers, "ray_address": self.address or "local"})
        return out


def parse_engine(name: str | None, workers: int | None = None, address: str | None = None) -> Engine:
    """The engine of the ``--engine / --ray-workers / --ray-address`` options; bad values name the option."""
    name = (name or "inprocess").strip().lower()
    if name not in ENGINES:
        raise ValidationError("engine", f"must be one of {', '.join(ENGINES)}, got {name!r}")
    if workers is not None and workers < 1:
        raise ValidationError("ray_workers", f"must be >= 1, got {workers}")
    if name == "inprocess" and (address or (workers or 1) != 1):
        raise ValidationError("engine", "--ray-workers and --ray-address need --engine ray")
    if address is not None and not address.strip():
        raise ValidationError("ray_address", "must not be empty (leave it out to start a local cluster)")
    return Engine(name, workers or 1, address.strip() if address else None)


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


@contextmanager
def session(engine: Engine) -> Iterator[dict[str, Any]]:
    """The Ray cluster of a job (nothing for ``inprocess``); yields figures (``start_seconds``, ``address``).

    A cluster this call started is shut down at the end; one already connected (a caller's session) or given by
    address is left running."""
    info: dict[str, Any] = {}
    if not engine.is_ray:
        yield info
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    try:
        import ray
    except ImportError:
        raise ValidationError("engine", "the ray engine needs ray[data,train] installed (pip install "
                              "'ray[data,train]==2.60.0')") from None
    if ray.is_initialized():
        info.update({"start_seconds": 0.0, "address": "connected"})
        yield info
        return
    t0 = time.perf_counter()
    env = {k: os.environ[k] for k in ("PYTHONPATH", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BELONG_DATA_DIR")
           if k in os.environ}
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                              "runtime_env": {"env_vars": env}}
    if engine.address:
        ray.init(address=engine.address, **common)
    else:
        ray.init(num_cpus=engine.workers, object_store_memory=engine.object_store_mb * 1024 * 1024,
                 **common)
    import logging

    import ray.data

    for name in ("ray", "ray.data", "ray.train"):
        logging.getLogger(name).setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # the same lists in the same order as in process
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    info.update({"start_seconds": round(time.perf_counter() - t0, 3), "address": engine.address or "local"})
    try:
        yield info
    finally:
        ray.shutdown()


def blocks(items: list, size: int, workers: int = 1) -> list[list]:
    """``items`` in consecutive blocks of at most ``size`` (the units a Ray Data pipeline maps), and at least
    4 blocks per worker when there are enough items (else some workers would wait)."""
    size = max(1, min(size, -(-len(items) // (4 * max(workers, 1)))))
    return [items[i:i + size] for i in range(0, len(items), size)]


def map_blocks(ds: Any, fn: type, kwargs: dict[str, Any], engine: Engine, **options: Any) -> Any:
    """``ds.map_batches`` with a pool of ``engine.workers`` actors of the callable class ``fn`` (one CPU each,
    never restarted: a failing block fails the job)."""
    import warnings

    import ray.data

    with warnings.catch_warnings():  # max_restarts goes through ray_remote_args, deprecated in name only
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(fn, fn_constructor_kwargs=kwargs, compute=ray.data.ActorPoolStrategy(size=engine.workers),
                              num_cpus=1, max_restarts=0, **options)
