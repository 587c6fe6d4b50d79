"""Model registry: names -> classes, construction from (untrusted) parameter dicts, tuned defaults.

Tuned values live in ``belong/models/tuned/<dataset_key>.json`` (written from :func:`belong.tuning.tune` results),
keyed by the dataset name as the evaluation harness spells it (``ml-1m-lcfn-split``, ``ml-100k``,
``edges-lastfm_asia_edges``). Each file names the protocol the values were tuned for; each model record holds
``params``, the ``validation`` protocol/metric/value (always carved from the training part), the date and the
test figures measured with those values. ``tuned_params(model, dataset_key)`` reads them so the evaluation
harness and the CLI can use them as defaults.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from belong.errors import ValidationError
from belong.models.base import Recommender
from belong.models.bpr import BPR
from belong.models.ease import EASE
from belong.models.graph import AdamicAdar, CommonNeighbours, ResourceAllocation
from belong.models.graph_filter import BSPM, GFCF
from belong.models.ials import IALS
from belong.models.itemknn import ItemKNN
from belong.models.most_popular import MostPopular
from belong.models.ppr import PersonalizedPageRank
from belong.models.rp3beta import RP3beta
from belong.registry import Registry

TUNED_DIR = Path(__file__).with_name("tuned")
_DATASET_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

MODELS: Registry[type[Recommender]] = Registry("model")
_ALIASES = {"most-popular": ("toppop", "pop"), "common-neighbours": ("cn",), "adamic-adar": ("aa",),
            "resource-allocation": ("ra",), "ease": ("easer",), "ials": ("als",),
            "gf-cf": ("gfcf",)}
for _cls in (MostPopular, ItemKNN, EASE, RP3beta, IALS, BPR, CommonNeighbours, AdamicAdar, ResourceAllocation,
             PersonalizedPageRank, GFCF, BSPM):
    MODELS.add(_cls.name, _cls, _ALIASES.get(_cls.name, ()))


def resolve(name: str) -> str:
    """Canonical model name for a name or alias (case-insensitive), else ValidationError listing the choices."""
    return MODELS.resolve(name)


def create(name: str, params: dict[str, Any] | None = None) -> Recommender:
    """A new, unfitted model; ``params`` are checked against the model's config (unknown keys and bad values
    raise ValidationError naming the model)."""
    cls = MODELS.get(name)
    if params is not None and not isinstance(params, dict):
        raise ValidationError(f"{cls.name}.config", f"must be a mapping of parameters, got {type(params).__name__}")
    return cls(**(params or {}))


def graph_models() -> list[str]:
    """Models for a square user x user friendship graph (link prediction)."""
    return [n for n, cls in MODELS.items() if cls.square]


def item_models() -> list[str]:
    """Models for a users x items interaction matrix."""
    return [n for n, cls in MODELS.items() if not cls.square]


@cache
def _tuned_file(dataset_key: str) -> dict[str, Any] | None:
    if not _DATASET_KEY.match(dataset_key):
        raise ValidationError("dataset", f"must be a dataset key like 'ml-1m-lcfn-split', got {dataset_key!r}")
    path = TUNED_DIR / f"{dataset_key}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def tuned_datasets() -> list[str]:
    """Dataset keys that have a tuned-values file."""
    return sorted(p.stem for p in TUNED_DIR.glob("*.json"))


def tuned_record(model: str, dataset_key: str) -> dict[str, Any] | None:
    """The full tuning record (params, validation protocol and metric value, date) or None."""
    data = _tuned_file(dataset_key)
    if data is None:
        return None
    return data.get("models", {}).get(resolve(model))


def tuned_params(model: str, dataset_key: str) -> dict[str, Any] | None:
    """Tuned hyper-parameters of ``model`` for ``dataset_key`` (e.g. ``ml-1m-lcfn-split``), or None if never
    tuned."""
    record = tuned_record(model, dataset_key)
    return None if record is None else dict(record["params"])


def default_params(name: str, dataset_hint: str | None = None) -> dict[str, Any]:
    """Tuned values for ``dataset_hint`` when recorded, else the model's general defaults."""
    key = resolve(name)
    tuned = tuned_params(key, dataset_hint) if dataset_hint else None
    return tuned if tuned is not None else MODELS.get(key)().get_config()
