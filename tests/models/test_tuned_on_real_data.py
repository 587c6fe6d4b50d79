"""The recorded tuned values reproduce the published ML-100K figures through the evaluation harness
(Ferrari Dacrema et al., TOIS 2021, Table 98; ``shared/data/PUBLISHED_RESULTS.md`` §4). Skipped without the data."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.models import registry

PUBLISHED_HR10 = {"ease": 0.6089, "ials": 0.6142, "itemknn": 0.5781, "rp3beta": 0.5685, "most-popular": 0.4145}


@pytest.fixture(scope="module")
def ml100k_split(data_dir: Path):
    from belong.evaluation.data import load_interactions
    from belong.evaluation.splitters import make_split

    return make_split("loo-sampled", load_interactions("ml-100k"))


@pytest.mark.data
@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED_HR10))
def test_tuned_values_land_on_the_published_hr10(ml100k_split, name: str) -> None:
    from belong.evaluation.harness import evaluate_model

    params = registry.tuned_params(name, "ml-100k")
    assert params is not None, f"no tuned values recorded for {name} on ml-100k"
    result = evaluate_model(registry.create(name, params), ml100k_split, [10], name=name)
    assert abs(result.metrics["hr@10"] - PUBLISHED_HR10[name]) <= 0.015
