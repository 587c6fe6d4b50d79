"""The HTML report: self-contained, one table row and plot entry per model, segments and paired tests shown."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from eval_helpers import CoOccurrence, Popularity, clusters

from belong.errors import ValidationError
from belong.evaluation import harness, modelspec
from belong.evaluation.modelspec import ModelChoice
from belong.evaluation.report import render_html, write_report
from belong.evaluation.splitters import make_split


@pytest.fixture(scope="module")
def run_dict() -> dict:
    data = clusters()
    modelspec.FACTORIES.add("report-cooc", lambda rest, params: CoOccurrence())
    modelspec.FACTORIES.add("report-pop", lambda rest, params: Popularity())
    models = [ModelChoice("report-cooc:a", {}), ModelChoice("report-pop:b", {})]
    return harness.run(data, make_split("given", data), models, [1, 2, 3]).to_dict()


def test_report_has_tables_plots_and_models(run_dict: dict, tmp_path: Path) -> None:
    path = write_report(tmp_path / "r.html", run_dict)
    html = path.read_text()
    for name in ("report-cooc:a", "report-pop:b", "Paired comparisons", "Metric by K", "Segments",
                 "Popularity bias", "ndcg@2"):
        assert name in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(img).startswith(b"\x89PNG") for img in images)
    assert "<link" not in html and "<script" not in html  # nothing fetched from elsewhere
    # the better model is highlighted in the comparison table
    assert '<td class="best">1.0000' in html


def test_report_for_a_single_model() -> None:
    data = clusters()
    single = harness.run(data, make_split("given", data), [ModelChoice("most-popular", {})], [1]).to_dict()
    html = render_html(single)
    assert "most-popular" in html and "Paired comparisons" not in html


def test_unwritable_report_path_is_a_validation_error(run_dict: dict, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValidationError, match="report"):
        write_report(blocker / "sub" / "r.html", run_dict)


def test_report_for_a_sampled_protocol_has_no_popularity_plot() -> None:
    data = clusters()
    split = make_split("loo-sampled", data, n_negatives=2, min_item_ratings=0, min_user_ratings=0)
    html = render_html(harness.run(data, split, [ModelChoice("most-popular", {})], [1, 2]).to_dict())
    assert "Not measured: sampled-candidate protocol" in html and html.count("data:image/png;base64,") == 2


def _fitted_ranker_metrics() -> dict:
    """A real LightGBM ranker fitted on synthetic lists where one feature carries the label."""
    import numpy as np

    from belong.ranking.dataset import TrainingLists, feature_names
    from belong.ranking.ranker import Ranker

    rng = np.random.default_rng(0)
    sources = ["strong", "weak"]
    names = feature_names(sources)
    groups = np.full(60, 30)
    n = int(groups.sum())
    y = (rng.random(n) < 0.1).astype(np.float32)
    X = rng.random((n, len(names))).astype(np.float32)
    X[:, 0] = y * 2 + rng.random(n)  # strong_score carries the label
    X[:, 1] = np.argsort(np.argsort(-X[:, 0]))  # a rank column
    lists = TrainingLists(X, y, groups, names, sources, np.arange(60), np.ones(60, np.int64), {"lists": 60})
    return Ranker(rounds=30, min_data_in_leaf=5).fit(lists).metrics


def test_report_shows_feature_importance_and_calibration_of_a_learned_ranker(run_dict: dict) -> None:
    fitted = _fitted_ranker_metrics()
    run = {**run_dict, "results": [{**run_dict["results"][0], "fitted": fitted}, run_dict["results"][1]]}
    html = render_html(run)
    assert "Learned ranker" in html and "feature importance" in html
    assert "ECE before" in html and "ranker against each source alone" in html
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 4  # the three usual plots and the importance bars
    top = max(fitted["feature_importance"], key=fitted["feature_importance"].get)
    assert top == "strong_score" or top.startswith("strong_")  # the informative feature leads
    assert "Learned ranker" not in render_html(run_dict)  # models without a ranker add no section
