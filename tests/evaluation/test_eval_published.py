"""Real-data checks against published figures (``shared/data/PUBLISHED_RESULTS.md``); skipped without the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from belong.evaluation import harness
from belong.evaluation import metrics as M
from belong.evaluation.data import load_interactions
from belong.evaluation.modelspec import build_model
from belong.evaluation.splitters import make_split
from belong.evaluation.stats import bootstrap_ci


@pytest.mark.data
@pytest.mark.slow
def test_ml1m_lcfn_split_ease_recall(data_dir: Path) -> None:
    data = load_interactions(f"lightgcn:{data_dir / 'ml-1m-lcfn-split'}")
    split = make_split("given", data)
    assert (split.stats["train_rows"], split.stats["test_rows"], split.stats["test_users"]) == (796_244, 99_455, 6_022)
    model = build_model("ease", {"l2": 300.0}).fit(split.train)
    users = split.test_users
    top = harness.top_k_full(model, users, 20)
    test = split.test.csr()
    recall = M.recall_at(M.hit_matrix(top, users, test), np.diff(test[users].indptr), 20)
    assert recall.mean() >= 0.27  # UltraGCN, the published upper reference, reports 0.2787
    lo, hi = bootstrap_ci(recall)
    assert lo < recall.mean() < hi


@pytest.mark.data
@pytest.mark.parametrize(("model", "published_hr10"), [("most-popular", 0.4145), ("itemknn", 0.5781)])
def test_ml100k_loo_sampled_matches_dacrema_table_98(data_dir: Path, model: str, published_hr10: float) -> None:
    data = load_interactions("ml-100k")
    split = make_split("loo-sampled", data)
    assert split.stats["test_users"] == 941 and split.candidates.shape == (941, 100)
    result = harness.evaluate_model(build_model(model, {}), split, [10], name=model)
    assert abs(result.metrics["hr@10"] - published_hr10) <= 0.015
