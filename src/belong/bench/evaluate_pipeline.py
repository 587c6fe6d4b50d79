"""``belong bench evaluate --pipeline SURFACE``: a ``pipeline:`` model's batched evaluation against the per-request
path, same fitted pipeline, same users, same run.

After one ``fit`` on the training part of ``dataset`` under its default protocol (temporal for a store), the same
``users`` test users (a seeded sample; all of them with ``users = 0``) are ranked twice:

* **per request** — one :meth:`~belong.pipeline.pipeline.Pipeline.run` per user (what evaluation did before);
* **batch** — :meth:`~belong.pipeline.pipeline.Pipeline.rank_batch` over batches of ``batch_size`` users: sources
  propose arrays for the whole batch (pixie walks every user's walkers together), merge, rules and blend run on
  arrays, the ranker predicts one matrix.

Output: ``{"dataset", "protocol", "surface", "k", "users_total", "users_timed", "fit_seconds",
"per_request_ms_per_user", "batch_ms_per_user", "speedup", "per_request_cpu_ms_per_user", "batch_cpu_ms_per_user",
"cpu_speedup", "identical_lists", "max_abs_metric_diff", "metrics", "reference_metrics"}`` — ``speedup`` =
per-request time / batch time on the same users (wall clock), ``cpu_speedup`` the same in this process's CPU time
(steadier on a shared, loaded machine: time waiting for a core is not counted); the metrics are those of
:func:`belong.evaluation.metrics.compute` at ``k`` on each path's lists, and ``max_abs_metric_diff`` the largest
per-user difference between the two paths over every metric (0 when they agree).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.evaluation import metrics as M
from belong.evaluation.data import load_interactions
from belong.evaluation.harness import top_k_full
from belong.evaluation.pipeline_model import PipelineEvaluable
from belong.evaluation.splitters import default_protocol, make_split


def bench_pipeline(dataset: str, surface: str, *, users: int = 500, k: int = 20, batch_size: int = 256,
                   seed: int = 0) -> dict[str, Any]:
    """Time ``pipeline:<surface>`` both ways on ``dataset`` (see the module doc)."""
    if users < 0:
        raise ValidationError("users", f"must be >= 0 (0: every test user), got {users}")
    if batch_size < 1:
        raise ValidationError("batch_size", f"must be >= 1, got {batch_size}")
    data = load_interactions(dataset)
    split = make_split(default_protocol(data), data)
    model = PipelineEvaluable(surface)
    t0 = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - t0
    test_users = split.test_users
    if users and users < test_users.size:
        test_users = np.sort(np.random.default_rng(seed).choice(test_users, users, replace=False))
    n = max(int(test_users.size), 1)
    model.batch = False
    t0, c0 = time.perf_counter(), time.process_time()
    ref = top_k_full(model, test_users, k, batch_size=batch_size)
    ref_s, ref_cpu = time.perf_counter() - t0, time.process_time() - c0
    model.batch = True
    t0, c0 = time.perf_counter(), time.process_time()
    top = top_k_full(model, test_users, k, batch_size=batch_size)
    batch_s, batch_cpu = time.perf_counter() - t0, time.process_time() - c0
    test, train = split.test.csr(), split.train.csr()
    got = M.compute(top, test_users, test, train, [k]).per_user
    want = M.compute(ref, test_users, test, train, [k]).per_user
    diff = max((float(np.nanmax(np.abs(got[m] - want[m]), initial=0.0)) for m in got), default=0.0)
    return {
        "dataset": data.meta.get("dataset", dataset), "protocol": split.protocol, "surface": surface, "k": k,
        "users_total": int(split.test_users.size), "users_timed": int(test_users.size),
        "batch_size": batch_size, "fit_seconds": round(fit_s, 3),
        "per_request_ms_per_user": round(ref_s / n * 1e3, 3), "batch_ms_per_user": round(batch_s / n * 1e3, 3),
        "speedup": round(ref_s / max(batch_s, 1e-9), 3),
        "per_request_cpu_ms_per_user": round(ref_cpu / n * 1e3, 3),
        "batch_cpu_ms_per_user": round(batch_cpu / n * 1e3, 3),
        "cpu_speedup": round(ref_cpu / max(batch_cpu, 1e-9), 3), "identical_lists": bool(np.array_equal(top, ref)),
        "max_abs_metric_diff": diff,
        "metrics": {m: M.nanmean(v) for m, v in got.items()},
        "reference_metrics": {m: M.nanmean(v) for m, v in want.items()},
    }
