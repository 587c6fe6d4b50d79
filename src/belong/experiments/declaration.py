"""An experiment declaration: what is compared (arms over one surface), on which unit, in which layer, when, and
read on which metrics. From a TOML file or an API JSON body; every refusal names the field and the reason.

```toml
name = "explore_more"
surface = "communities"           # catalogue name or TOML path: the control's pipeline
unit = "user"                     # or "cluster" (friend-graph clusters, see belong.experiments.clusters)
layer = "communities"             # experiments of one layer are mutually exclusive
traffic = 1.0                     # share of the layer's bucket space
start = "2026-12-01T00:00:00Z"
stop = "2026-12-29T00:00:00Z"     # optional
primary_metric = "joins"
guardrails = ["reports", "blocks"]
salt = "explore_more"             # optional, defaults to the name

[[arms]]
name = "control"
weight = 0.5

[[arms]]
name = "treatment"
weight = 0.5
override = { "scorer.c" = 30.0, "sources.trending.weight" = 0.5 }
# or: surface = "communities_ranked" (another surface file) / model = "<artifact version>"
```
"""

from __future__ import annotations

import copy
import math
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from belong.domain import parse_ts
from belong.errors import ValidationError

#: metric name -> what it counts (definitions: belong.experiments.metrics)
METRICS = {
    "joins": "joins of communities recommended to the user (shown in an impression before the join)",
    "joins_held_7d": "of those joins, the ones still held 7 days later",
    "messages": "messages sent by the user",
    "pymk_accepts": "friendships accepted with people recommended to the user",
    "join_rate": "joins of recommended communities per impression (ratio metric, delta method)",
    "reports": "reports made by the user (guardrail)",
    "blocks": "blocks made by the user (guardrail)",
}
UNITS = ("user", "cluster")
BUCKETS = 10_000
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")
_FIELDS = {"name", "surface", "arms", "unit", "layer", "traffic", "start", "stop", "primary_metric", "guardrails",
           "salt", "description"}
_ARM_FIELDS = {"name", "weight", "override", "surface", "model"}


class Arm(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    weight: float
    override: dict[str, Any] = {}
    surface: str | None = None
    model: str | None = None


class Declaration(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    surface: str
    arms: tuple[Arm, ...]
    unit: str = "user"
    layer: str = "default"
    traffic: float = 1.0
    start_us: int = 0
    stop_us: int | None = None
    primary_metric: str = "joins"
    guardrails: tuple[str, ...] = ()
    salt: str = ""
    description: str = ""

    @property
    def control(self) -> str:
        """The first arm is the control."""
        return self.arms[0].name

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise ValidationError("arm", f"unknown arm {name!r}; {self.name} has {', '.join(a.name for a in self.arms)}")

    @property
    def metrics(self) -> list[str]:
        return [self.primary_metric, *[g for g in self.guardrails if g != self.primary_metric]]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out


def _str(raw: Any, field: str, *, required: bool = True, default: str = "") -> str:
    if raw is None:
        if required:
            raise ValidationError(field, "is required")
        return default
    if not isinstance(raw, str) or not raw.strip():
        raise ValidationError(field, f"must be a non-empty string, got {raw!r}")
    return raw.strip()


def _number(raw: Any, field: str, lo: float, hi: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise ValidationError(field, f"must be a number, got {raw!r}")
    if not lo <= raw <= hi:
        raise ValidationError(field, f"must be in [{lo}, {hi}], got {raw}")
    return float(raw)


def _metric(raw: Any, field: str) -> str:
    name = _str(raw, field)
    if name not in METRICS:
        raise ValidationError(field, f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return name


def _arm(raw: Any, i: int, surface_check: Any) -> Arm:
    field = f"arms[{i}]"
    if not isinstance(raw, dict):
        raise ValidationError(field, "must be a table with name and weight")
    extra = sorted(set(raw) - _ARM_FIELDS)
    if extra:
        raise ValidationError(f"{field}.{extra[0]}" if extra[0] else field,
                              f"{extra[0]!r} is not a field of an arm (fields: {', '.join(sorted(_ARM_FIELDS))})")
    name = _str(raw.get("name"), f"{field}.name")
    if not _NAME_RE.match(name):
        raise ValidationError(f"{field}.name", "must be lower-case letters, digits, '_' or '-' (at most 64)")
    weight = _number(raw.get("weight"), f"{field}.weight", 0.0, 1.0)
    override = raw.get("override", {})
    if not isinstance(override, dict):
        raise ValidationError(f"{field}.override", "must be a table of 'component.parameter' = value")
    surface = raw.get("surface")
    if surface is not None:
        surface = _str(surface, f"{field}.surface")
        surface_check(surface, f"{field}.surface")
    model = raw.get("model")
    if model is not None:
        model = _str(model, f"{field}.model")
    return Arm(name=name, weight=weight, override=dict(override), surface=surface, model=model)


def parse(data: dict[str, Any], *, check_surfaces: bool = True) -> Declaration:
    """A validated declaration from parsed TOML / JSON. ``check_surfaces``: load every named surface and apply every
    arm's override to it (an unknown surface, component or parameter is refused here, not at the first request)."""
    if not isinstance(data, dict):
        raise ValidationError("experiment", "must be a table / JSON object")
    extra = sorted(set(data) - _FIELDS)
    if extra:
        raise ValidationError(extra[0] or "experiment",  # an empty key is named by its container
                              f"{extra[0]!r} is not a field of an experiment (fields: {', '.join(sorted(_FIELDS))})")
    name = _str(data.get("name"), "name")
    if not _NAME_RE.match(name):
        raise ValidationError("name", "must be lower-case letters, digits, '_' or '-', starting with a letter or "
                              "digit (at most 64)")

    def surface_check(spec: str, field: str) -> None:
        if check_surfaces:
            from belong.surfaces import declaration as surface_declaration

            surface_declaration(spec, field)

    surface = _str(data.get("surface"), "surface")
    surface_check(surface, "surface")
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, list) or len(arms_raw) < 2:
        raise ValidationError("arms", "needs at least two arms (the first is the control)")
    arms = tuple(_arm(a, i, surface_check) for i, a in enumerate(arms_raw))
    names = [a.name for a in arms]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValidationError("arms", f"arm names must be unique; repeated: {', '.join(dup)}")
    total = sum(a.weight for a in arms)
    if abs(total - 1.0) > 1e-9:
        raise ValidationError("arms", f"weights must sum to 1, got {total:g}")
    unit = _str(data.get("unit"), "unit", required=False, default="user")
    if unit not in UNITS:
        raise ValidationError("unit", f"must be one of {', '.join(UNITS)}, got {unit!r}")
    layer = _str(data.get("layer"), "layer", required=False, default="default")
    traffic = _number(data.get("traffic", 1.0), "traffic", 0.0001, 1.0)
    start_us = parse_ts(data["start"], "start") if data.get("start") not in (None, "") else time.time_ns() // 1000
    stop_us = parse_ts(data["stop"], "stop") if data.get("stop") not in (None, "") else None
    if stop_us is not None and stop_us <= start_us:
        raise ValidationError("stop", "must be after start")
    primary = _metric(data.get("primary_metric", "joins"), "primary_metric")
    guard_raw = data.get("guardrails", [])
    if not isinstance(guard_raw, list):
        raise ValidationError("guardrails", "must be a list of metric names")
    guardrails = tuple(_metric(g, f"guardrails[{i}]") for i, g in enumerate(guard_raw))
    salt = _str(data.get("salt"), "salt", required=False, default=name)
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ValidationError("description", "must be a string")
    decl = Declaration(name=name, surface=surface, arms=arms, unit=unit, layer=layer, traffic=traffic,
                       start_us=start_us, stop_us=stop_us, primary_metric=primary, guardrails=guardrails, salt=salt,
                       description=description)
    if check_surfaces:
        for i, arm in enumerate(arms):
            arm_declaration(decl, arm, f"arms[{i}]")
    return decl


_SINGLE = {"scorer": "scorer", "selector": "selector", "select": "selector"}
_MANY = ("sources", "filters", "hydrators")


def apply_override(data: dict[str, Any], override: dict[str, Any], field: str) -> dict[str, Any]:
    """A copy of the surface declaration ``data`` with ``override`` applied; unknown components are refused."""
    out = copy.deepcopy(data)
    for key, value in override.items():
        where = f"{field}.override.{key}"
        parts = str(key).split(".")
        if parts[0] in _SINGLE and len(parts) == 2:
            table = out.setdefault(_SINGLE[parts[0]], {"type": "weighted_rrf" if parts[0] == "scorer" else "top_k"})
            table[parts[1]] = value
        elif parts[0] in _MANY and len(parts) == 3:
            rows = out.get(parts[0], [])
            hit = [r for r in rows if (r.get("name") or r.get("type")) == parts[1]]
            if not hit:
                names = ", ".join(str(r.get("name") or r.get("type")) for r in rows) or "none"
                raise ValidationError(where, f"no {parts[0][:-1]} named {parts[1]!r} in this surface ({names})")
            hit[0][parts[2]] = value
        else:
            raise ValidationError(where, "must be 'scorer.PARAM', 'selector.PARAM' or "
                                  "'sources|filters|hydrators.NAME.PARAM'")
    return out


def arm_declaration(decl: Declaration, arm: Arm, field: str = "arm") -> tuple[str, dict[str, Any]]:
    """(surface name, declaration dict) of ``arm``, validated by building its (unfitted) pipeline."""
    from belong import surfaces as catalogue
    from belong.pipeline import Pipeline

    spec = arm.surface or decl.surface
    name, data = catalogue.declaration(spec, f"{field}.surface" if arm.surface else "surface")
    base_kind = catalogue.declaration(decl.surface, "surface")[1].get("surface")
    if data.get("surface") != base_kind:
        raise ValidationError(f"{field}.surface", f"is a {data.get('surface')} surface; the experiment's surface "
                              f"is {base_kind}")
    if arm.override:
        data = apply_override(data, arm.override, field)
    try:
        Pipeline.from_dict(data, name)
    except ValidationError as exc:
        raise ValidationError(f"{field}.override.{exc.field}", exc.reason) from None
    return name, data


def from_toml(path: str | Path) -> Declaration:
    p = Path(path)
    if not p.is_file():
        raise ValidationError("file", f"no experiment file {str(p)!r}")
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError("file", f"{p} is not valid TOML: {exc}") from None
    return parse(data)


def from_stored(data: dict[str, Any]) -> Declaration:
    """A declaration as stored (:meth:`Declaration.to_dict`), trusted: no surface is loaded."""
    return msgspec.convert(data, Declaration)
