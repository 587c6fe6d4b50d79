"""Which models an evaluation runs, with which parameters: name resolution, ``--param`` parsing, tuned defaults,
and the extension point for evaluable things that are not registry models.

Plain names go to ``belong.models.registry``; ``PREFIX:REST`` names (e.g. ``pipeline:communities``) go to the
factory registered for ``PREFIX`` in :data:`FACTORIES`; that factory returns any object satisfying
:class:`belong.evaluation.harness.Evaluable`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from belong.errors import ValidationError
from belong.registry import Registry

if TYPE_CHECKING:
    from belong.evaluation.harness import Evaluable

_PARAM_RE = re.compile(r"^([A-Za-z0-9_:.-]+?)\.([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
Factory = Callable[[str, dict[str, Any]], "Evaluable"]
#: ``--model PREFIX:REST`` -> ``FACTORIES.get(PREFIX)(REST, params)``: the extension point for evaluable things
#: that are not registry models
FACTORIES: Registry[Factory] = Registry("model kind", "model")


@FACTORIES.register("pipeline")
def _pipeline(spec: str, params: dict[str, Any]) -> Evaluable:
    """``pipeline:SURFACE``: a surface of the catalogue or a TOML file (:mod:`belong.evaluation.pipeline_model`)."""
    from belong.evaluation.pipeline_model import PipelineEvaluable

    return PipelineEvaluable(spec, params)


def build_model(name: str, params: dict[str, Any]) -> Evaluable:
    """A fresh model for ``name`` (a registry name, or ``PREFIX:REST`` for a registered factory)."""
    if ":" in name:
        prefix, rest = name.split(":", 1)
        return FACTORIES.get(prefix)(rest, params)
    from belong.models import registry

    return registry.create(name, params)


def parse_value(raw: str) -> Any:
    """A JSON value (number, bool, null, list, quoted string) or else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_model_params(raw: list[str]) -> dict[str, dict[str, Any]]:
    """``["ease.l2=300", "itemknn.k=50"]`` -> ``{"ease": {"l2": 300}, "itemknn": {"k": 50}}``."""
    out: dict[str, dict[str, Any]] = {}
    for item in raw:
        m = _PARAM_RE.match(item.strip())
        if not m:
            raise ValidationError("param", f"must look like MODEL.NAME=VALUE (e.g. ease.l2=300), got {item!r}")
        out.setdefault(m.group(1).lower(), {})[m.group(2)] = parse_value(m.group(3))
    return out


#: protocols whose tuned values are filed under ``<dataset key>-<suffix>`` (tuned on their own validation).
PROTOCOL_KEY_SUFFIX = {"loo-sampled": "loo"}


def tuned_keys(dataset: str, protocol: str) -> list[str]:
    """Keys to look tuned values up under, most specific first.

    The dataset name (lower case, other characters as '-'; ``edges:lastfm_asia_edges`` -> ``edges-lastfm_asia_edges``),
    also without a ``-split`` suffix (LightGCN folders: ``ml-1m-lcfn-split`` -> ``ml-1m-lcfn``); each preceded by
    its protocol-specific variant (``ml-100k`` + ``loo-sampled`` -> ``ml-100k-loo``).
    """
    base = re.sub(r"[^a-z0-9._-]+", "-", Path(dataset).name.lower()).strip("-.") or "unknown"
    bases = [base] + ([base.removesuffix("-split")] if base.endswith("-split") else [])
    suffix = PROTOCOL_KEY_SUFFIX.get(protocol)
    return [k for b in bases for k in ([f"{b}-{suffix}"] if suffix else []) + [b]]


@dataclass(frozen=True)
class ModelChoice:
    """A model to evaluate: its name, its parameters, where they came from (``tuned:<key>``, ``defaults`` or
    ``given``) and which of them were set explicitly (``--param``; tuning keeps those fixed)."""

    name: str
    params: dict[str, Any]
    params_source: str = "given"
    explicit: dict[str, Any] = field(default_factory=dict)


def resolve_models(names: list[str], square: bool) -> list[str]:
    """Split comma lists, expand ``all`` (graph or item baselines, by the data's shape), canonicalise names."""
    from belong.models import registry

    out: list[str] = []
    for raw in names:
        for name in (n.strip() for n in raw.split(",")):
            if not name:
                continue
            if name.lower() == "all":
                expanded = registry.graph_models() if square else registry.item_models()
            else:
                expanded = [name if ":" in name else registry.resolve(name)]
            out.extend(n for n in expanded if n not in out)
    if not out:
        raise ValidationError("model", "name at least one model")
    return out


def model_params(names: list[str], overrides: dict[str, dict[str, Any]], keys: list[str]) -> list[ModelChoice]:
    """Each model's parameters: tuned values under the first of ``keys`` that has them (else the model's
    defaults), then the explicit ``--param`` overrides on top."""
    from belong.models import registry

    canon = {}
    for given in overrides:
        canon[given if ":" in given else registry.resolve(given)] = overrides[given]
    unknown = [n for n in canon if n not in names]
    if unknown:
        raise ValidationError("param", f"names model {unknown[0]!r}, which is not among --model {', '.join(names)}")
    out = []
    for name in names:
        base: dict[str, Any] = {}
        source = "given"
        if ":" not in name:
            key = next((k for k in keys if registry.tuned_params(name, k) is not None), None)
            base = registry.default_params(name, key)
            source = f"tuned:{key}" if key else "defaults"
        explicit = canon.get(name, {})
        out.append(ModelChoice(name, {**base, **explicit}, source, explicit))
    return out
