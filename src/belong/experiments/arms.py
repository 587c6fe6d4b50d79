"""An arm's surface: the experiment's surface declaration (or the arm's own surface file) with the arm's parameter
overrides applied, and its fitted :class:`~belong.pipeline.Pipeline` built on a model version's state, reusing
every fitted component the override leaves unchanged (a scorer-only change fits nothing but the scorer).

Override keys: ``scorer.PARAM``, ``selector.PARAM`` (``select.PARAM`` too), ``sources.NAME.PARAM``,
``filters.NAME.PARAM``, ``hydrators.NAME.PARAM``, where NAME is the component's name (its ``name``, else its type).
"""

from __future__ import annotations

from typing import Any

from belong.experiments.declaration import Arm, Declaration
from belong.pipeline import Pipeline
from belong.state import WorldState


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
