"""Every item model trains on a synthetic catalogue of 50,000 communities within 16 GiB (issue 17), measured by the
same code as ``belong bench models``."""

from __future__ import annotations

import pytest

from belong.bench.models import DEFAULT_MODELS, bench_models, synthetic_catalogue

GIB = 1024.0  # MiB


def test_synthetic_catalogue_has_a_head_and_a_tail() -> None:
    X = synthetic_catalogue(3000, 2000, per_user=8.0, seed=1)
    assert X.shape == (3000, 2000) and X.max() == 1.0
    assert (X.getnnz(axis=1) >= 1).all()
    popularity = sorted(X.getnnz(axis=0).tolist(), reverse=True)
    assert popularity[0] > 20 * max(popularity[1000], 1)  # Zipf-like: the head dominates


@pytest.mark.slow
def test_every_model_trains_on_50000_communities_within_16_gib() -> None:
    """About 5 minutes on 2 cores (304 s). EASE's dense head is capped at 5,000 items here to keep it shorter;
    the default cap (10,000) measured 3.0 GiB peak and 444 s with ``belong bench models`` (see the module doc)."""
    models = {**DEFAULT_MODELS, "ease": {"max_items": 5000}}
    result = bench_models(n_users=30_000, n_items=50_000, per_user=12.0, score_users=200, models=models)
    assert {r["model"] for r in result["models"]} == set(DEFAULT_MODELS) - {"most-popular"}
    errors = [r for r in result["models"] if "error" in r]
    assert not errors, errors
    for r in result["models"]:
        assert r["fit_peak_mib"] < 16 * GIB, r
        assert r["score_peak_mib"] < 16 * GIB, r
        assert r["process_peak_rss_mib"] < 16 * GIB, r
    ease = next(r for r in result["models"] if r["model"] == "ease")
    assert ease["fit_peak_mib"] < 1.5 * GIB  # the head solve (5,000 items: about 32 x 5000^2 bytes), not 50,000^2
