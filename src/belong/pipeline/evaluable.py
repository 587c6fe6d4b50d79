"""The pipeline as an evaluable model, so ``belong evaluate --model pipeline:SURFACE`` runs the very objects
that serve requests.

Names (after the ``pipeline:`` prefix):

* ``communities`` / ``people`` / ``content`` or a TOML path: the whole surface (all sources, blended);
* ``SURFACE/SOURCE`` (e.g. ``communities/ials_ann``), or ``SURFACE/A+B``: only those sources, same filters and
  blend — each source evaluated alone.

``fit(train)`` builds a :class:`WorldState` from the training :class:`Interactions` (users x items become
memberships; a square user x user matrix becomes the friendship graph, for the people surface) — or, for a time
split of a whole world (a store, a simulated world, hetrec with its friendships: ``meta["world"]`` and
``meta["as_of_us"]``), from every event and entity of that world before the cut, as serving would have seen it
then — and prepares every component; ``recommend_idx`` runs one request per user. Indices are the training data's own: the state
keeps the order of ``train.user_ids`` / ``train.item_ids``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from belong.domain import Surface
from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.state import WorldState
from belong.pipeline.types import MAX_K, Request


class PipelineEvaluable:
    """Adapter from :class:`Pipeline` to the harness's ``Evaluable`` protocol."""

    def __init__(self, spec: str, params: dict[str, Any] | None = None) -> None:
        surface, _, only = spec.partition("/")
        if not surface:
            raise ValidationError("model", "pipeline: needs a surface, e.g. pipeline:communities")
        if params:
            raise ValidationError("model", f"pipeline:{spec} takes no --param (edit the surface TOML); got {sorted(params)}")
        self.spec = spec
        self.pipeline = Pipeline.load(surface)
        self.only = [s for s in only.split("+") if s] if only else []
        if self.only:
            self.pipeline = self.pipeline.only(self.only)
        self.name = f"pipeline:{spec}"
        self.fit_seconds = 0.0

    def get_config(self) -> dict[str, Any]:
        return self.pipeline.to_dict()

    def fit(self, train: Interactions) -> Self:
        import time

        t0 = time.perf_counter()
        world, as_of = train.meta.get("world"), train.meta.get("as_of_us")
        if world is not None and as_of is not None:  # a time split of a whole world: all of it before the cut
            self.state = WorldState.from_world_as_of(world, int(as_of), user_ids=train.user_ids,
                                                     community_ids=train.item_ids)
        else:
            self.state = WorldState.from_interactions(train)
        self.n_items = train.n_items
        square = self.state.n_communities == 0 and self.state.friend_csr().nnz > 0
        if square and self.pipeline.surface is not Surface.PEOPLE:
            raise ValidationError("model", f"{self.name}: a friendship graph needs the people surface (pipeline:people)")
        self.pipeline.fit(self.state)
        self.user_ids = train.user_ids
        self.fit_seconds = time.perf_counter() - t0
        return self

    def fitted(self) -> dict[str, Any]:
        """The scorer's own validation figures (a learned ranker: feature importance, calibration error, per-source
        comparison on its validation lists); empty for the blend."""
        fitted = getattr(self.pipeline.scorer, "fitted", None)
        return fitted() if callable(fitted) else {}

    def recommend_idx(self, user_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        kk = min(int(k), MAX_K)
        out_i = np.full((len(user_idx), kk), -1, np.int64)
        out_s = np.full((len(user_idx), kk), -np.inf, np.float32)
        for row, u in enumerate(np.asarray(user_idx).tolist()):
            req = Request(str(self.user_ids[u]), self.pipeline.surface, k=kk, explain=False)
            items = [it for it in self.pipeline.run(req).items if it.index < self.n_items]  # not in the data: skip
            out_i[row, : len(items)] = [it.index for it in items]
            out_s[row, : len(items)] = [it.score for it in items]
        return out_i, out_s

    def score_items(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        raise ValidationError("protocol", f"{self.name} ranks its own candidates; sampled protocols are not supported")


def make(spec: str, params: dict[str, Any]) -> PipelineEvaluable:
    """Factory for ``--model pipeline:SPEC``."""
    return PipelineEvaluable(spec, params)


def register_evaluation_factory() -> None:
    """Make ``pipeline:`` model names available to ``belong evaluate``."""
    try:
        from belong.evaluation.modelspec import register_factory
    except ImportError:  # the evaluation package is optional for serving
        return
    register_factory("pipeline", make)
