"""Registry: names, aliases, parameter checking and the recorded tuned values."""

from __future__ import annotations

import pytest

from belong.errors import ValidationError
from belong.models import registry
from belong.models.ease import EASE
from belong.models.most_popular import MostPopular


def test_aliases_resolve_case_insensitively() -> None:
    assert isinstance(registry.create("TopPop"), MostPopular)
    assert registry.resolve(" ease ") == "ease"


def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(ValidationError) as info:
        registry.create("deep-magic")
    assert info.value.field == "model"
    assert "unknown model 'deep-magic'" in info.value.reason
    assert "ease" in info.value.reason and "adamic-adar" in info.value.reason


@pytest.mark.parametrize(
    ("params", "fragment"),
    [({"l2": -1.0}, "l2"), ({"l2": "big"}, "l2"), ({"lambda": 3}, "lambda")],
)
def test_bad_params_are_validation_errors(params: dict, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        registry.create("ease", params)
    assert info.value.field == "ease.config"
    assert fragment in info.value.reason


def test_params_must_be_a_mapping() -> None:
    with pytest.raises(ValidationError):
        registry.create("ease", [("l2", 3)])  # type: ignore[arg-type]


def test_create_applies_params() -> None:
    model = registry.create("ease", {"l2": 42})
    assert isinstance(model, EASE) and model.get_config()["l2"] == 42.0


def test_tuned_values_are_recorded_for_the_shared_datasets() -> None:
    assert {"ml-1m-lcfn-split", "ml-100k", "edges-lastfm_asia_edges"} <= set(registry.tuned_datasets())
    for key in registry.tuned_datasets():
        for name in registry.MODELS:
            record = registry.tuned_record(name, key)
            if record is None:
                continue
            # every record says how it was found, and its params build a valid model
            assert record["validation"]["carved_from"] == "train"
            assert {"protocol", "metric", "value"} <= set(record["validation"])
            assert record["date"]
            registry.create(name, record["params"])
    assert registry.tuned_params("ease", "ml-1m-lcfn-split")["l2"] > 0


def test_tuned_params_absent_or_bad_key() -> None:
    assert registry.tuned_params("ease", "no-such-dataset") is None
    with pytest.raises(ValidationError):
        registry.tuned_params("ease", "../etc/passwd")


def test_default_params_fall_back_to_model_defaults() -> None:
    assert registry.default_params("ease") == registry.create("ease").get_config()
    assert registry.default_params("ease", "no-such-dataset") == registry.create("ease").get_config()
    assert registry.default_params("easer", "ml-1m-lcfn-split") == registry.tuned_params("ease", "ml-1m-lcfn-split")
