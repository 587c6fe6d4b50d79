"""An arm's surface: the experiment's surface declaration (or the arm's own surface file) with the arm's parameter
overrides applied, and its fitted :class:`~belong.pipeline.Pipeline` built on a model version's state, reusing
every fitted component the override leaves unchanged (a scorer-only change fits nothing but the scorer).

Override keys: ``scorer.PARAM``, ``selector.PARAM`` (``select.PARAM`` too), ``sources.NAME.PARAM``,
``filters.NAME.PARAM``, ``hydrators.NAME.PARAM``, where NAME is the component's name (its ``name``, else its type).
"""

from __future__ import annotations

import copy
from typing import Any

from belong.errors import ValidationError
from belong.experiments.declaration import Arm, Declaration
from belong.pipeline import Pipeline
from belong.state import WorldState

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


def is_plain(decl: Declaration, arm: Arm) -> bool:
    """Whether ``arm`` serves the experiment's surface as declared (no override, no other surface or model)."""
    return not arm.override and arm.surface is None and arm.model is None


def fit_arm(base: Pipeline, name: str, data: dict[str, Any], state: WorldState) -> Pipeline:
    """The arm's pipeline over ``state``: components equal (same declaration) to the fitted ``base``'s are shared,
    the others are prepared / fitted here."""
    arm = Pipeline.from_dict(data, name)
    fitted = {("source", c.name): c for c in base.sources} | {("filter", c.name): c for c in base.filters} \
        | {("hydrator", c.name): c for c in base.hydrators}

    def reuse(kind: str, comps: list) -> list:
        out = []
        for c in comps:
            old = fitted.get((kind, c.name))
            if old is not None and old.to_dict() == c.to_dict():
                out.append(old)
            else:
                c.prepare(state)
                out.append(c)
        return out

    arm.sources = reuse("source", arm.sources)
    arm.filters = reuse("filter", arm.filters)
    arm.hydrators = reuse("hydrator", arm.hydrators)
    if arm.scorer.to_dict() == base.scorer.to_dict() and [s.to_dict() for s in arm.sources] == \
            [s.to_dict() for s in base.sources]:
        arm.scorer = base.scorer
    else:
        arm.scorer.source_weights = {s.name: s.config.weight for s in arm.sources}
        arm.scorer.fit(state, arm.fresh, None)
    if arm.selector.to_dict() == base.selector.to_dict():
        arm.selector = base.selector
    else:
        arm.selector.prepare(state)
    arm.state = state
    return arm
