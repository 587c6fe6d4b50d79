"""``belong bench models``: fit time and peak memory of every item model on a large synthetic catalogue, with
most-popular measured in the same run as the baseline.

The catalogue: ``n_users`` users with ``per_user`` memberships each (on average), drawn from a Zipf-like popularity
over ``n_items`` communities (exponent ``zipf``), so a head of popular communities and a long tail, as on real
platforms. Peak memory is what numpy/scipy allocated during the fit (``tracemalloc``, which numpy reports to) and the
process's peak resident size after it; a model whose fit raises is reported with its error, not hidden.
"""

from __future__ import annotations

import resource
import time
import tracemalloc
from typing import Any

import numpy as np
import scipy.sparse as sp
from rich.console import Console

#: the item models a communities surface can serve from, with the settings a 50,000-item catalogue runs
DEFAULT_MODELS: dict[str, dict[str, Any]] = {
    "most-popular": {},
    "ease": {},
    "bspm": {},
    "gf-cf": {},
    "rp3beta": {},
    "itemknn": {},
    "ials": {"num_threads": 1},
}


def synthetic_catalogue(n_users: int, n_items: int, per_user: float = 12.0, zipf: float = 0.9,
                        seed: int = 0) -> sp.csr_matrix:
    """A binary users x items CSR with Zipf-like item popularity (every user has at least one item)."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n_items + 1) ** zipf
    weights /= weights.sum()
    counts = np.maximum(1, rng.poisson(per_user, n_users))
    rows = np.repeat(np.arange(n_users), counts)
    cols = rng.permutation(n_items)[rng.choice(n_items, rows.size, p=weights)]  # popular ids spread over the range
    X = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_users, n_items))
    X.sum_duplicates()
    X.data[:] = 1.0
    return X


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def fit_and_measure(name: str, params: dict[str, Any], X: sp.csr_matrix, users: np.ndarray) -> dict[str, Any]:
    """Fit one model and score ``users`` (top 20): seconds and peak traced MiB of each step."""
    from belong.models import registry

    model = registry.create(name, params)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        model.fit(X)
        fit_s = time.perf_counter() - t0
        _, fit_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        t1 = time.perf_counter()
        model.recommend_idx(users, 20)
        score_s = time.perf_counter() - t1
        _, score_peak = tracemalloc.get_traced_memory()
    except Exception as exc:  # reported, not hidden: the figure is whether each model fits at this size
        tracemalloc.stop()
        return {"model": name, "params": params, "error": f"{type(exc).__name__}: {exc}"}
    tracemalloc.stop()
    return {"model": name, "params": params, "fit_s": round(fit_s, 2), "fit_peak_mib": round(fit_peak / 2**20, 1),
            "score_s_per_1000_users": round(score_s * 1000 / max(len(users), 1), 3),
            "score_peak_mib": round(score_peak / 2**20, 1), "process_peak_rss_mib": round(_peak_rss_mib(), 1)}


def bench_models(n_users: int = 100_000, n_items: int = 50_000, *, per_user: float = 12.0, score_users: int = 1000,
                 models: dict[str, dict[str, Any]] | None = None, seed: int = 0,
                 console: Console | None = None) -> dict[str, Any]:
    """Every model in ``models`` (default :data:`DEFAULT_MODELS`) fitted on one synthetic catalogue."""
    console = console or Console(stderr=True)
    models = dict(DEFAULT_MODELS if models is None else models)
    with console.status(f"building {n_users:,} users x {n_items:,} communities"):
        X = synthetic_catalogue(n_users, n_items, per_user, seed=seed)
    users = np.random.default_rng(seed).choice(n_users, min(score_users, n_users), replace=False)
    results = []
    baseline = fit_and_measure("most-popular", {}, X, users)
    for name, params in models.items():
        if name == "most-popular":
            continue
        with console.status(f"fitting {name} on {n_items:,} communities"):
            results.append(fit_and_measure(name, params, X, users))
        r = results[-1]
        console.print(f"{name}: " + (r["error"] if "error" in r else
                                     f"fit {r['fit_s']} s, peak {r['fit_peak_mib']} MiB"))
    return {"bench": "models", "users": n_users, "items": n_items, "interactions": int(X.nnz), "seed": seed,
            "baseline": baseline, "models": results,
            "max_fit_peak_mib": max((r.get("fit_peak_mib", 0.0) for r in results), default=0.0)}
