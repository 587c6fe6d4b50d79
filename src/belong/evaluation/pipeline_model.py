"""The pipeline as an evaluable model, so ``belong evaluate --model pipeline:SURFACE`` runs the very objects
that serve requests.

Names (after the ``pipeline:`` prefix):

* a catalogue name (``communities``, ``communities_ranked``, ``people``, ``content``; :mod:`belong.surfaces`) or a
  TOML file path (``path/to/file.toml``): the whole surface;
* ``NAME/SOURCE`` (e.g. ``communities/ials_ann``), ``NAME/A+B`` or ``path/to/file.toml/A+B``: only those sources,
  same filters and scorer — each source evaluated alone.

``fit(train)`` builds a :class:`WorldState` from the training :class:`Interactions` (users x items become
memberships; a square user x user matrix becomes the friendship graph, for the people surface) — or, for a time
split of a whole world (a store, a simulated world, hetrec with its friendships: ``meta["world"]`` and
``meta["as_of_us"]``), from every event and entity of that world before the cut, as serving would have seen it
then (:func:`belong.state.as_of`) — and fits the pipeline; ``recommend_idx`` ranks the users a batch at a time
(:meth:`~belong.pipeline.pipeline.Pipeline.rank_batch`; ``batch = False``: one request per user, the same answers).
Indices are the training data's own: the state keeps the order of ``train.user_ids`` / ``train.item_ids``.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from belong import surfaces
from belong.domain import Surface
from belong.errors import ValidationError
from belong.interactions import Interactions
from belong.pipeline.types import MAX_K, Request
from belong.state import as_of, from_interactions


def split_spec(spec: str) -> tuple[str, str]:
    """``(surface, sources)`` of a ``pipeline:`` spec: a catalogue name or a ``.toml`` path, then an optional
    ``/A+B`` restricting it to those sources."""
    if ".toml" in spec:
        head, _, rest = spec.partition(".toml")
        return head + ".toml", rest.lstrip("/")
    surface, _, only = spec.partition("/")
    return surface, only


class PipelineEvaluable:
    """Adapter from :class:`Pipeline` to the harness's ``Evaluable`` protocol."""

    def __init__(self, spec: str, params: dict[str, Any] | None = None) -> None:
        surface, only = split_spec(spec)
        if not surface:
            raise ValidationError("model", "pipeline: needs a surface, e.g. pipeline:communities")
        if params:
            raise ValidationError("model",
                                  f"pipeline:{spec} takes no --param (edit the surface TOML); got {sorted(params)}")
        self.spec = spec
        self.pipeline = surfaces.load(surface, "model")
        self.only = [s for s in only.split("+") if s] if only else []
        if self.only:
            self.pipeline = self.pipeline.only(self.only)
        self.name = f"pipeline:{spec}"
        self.fit_seconds = 0.0
        #: score users in batches (:meth:`Pipeline.rank_batch`); False: one request at a time (the reference)
        self.batch = True

    def get_config(self) -> dict[str, Any]:
        return self.pipeline.to_dict()

    def fit(self, train: Interactions) -> Self:
        import time

        t0 = time.perf_counter()
        world, cut_us = train.meta.get("world"), train.meta.get("as_of_us")
        content = self.pipeline.surface is Surface.CONTENT
        #: content surface: the state's content index -> the training data's item index (-1: not an item there)
        self.item_of: np.ndarray | None = None
        if content:
            self.state = self._content_state(train, world, cut_us)
        elif world is not None and cut_us is not None:  # a time split of a whole world: all of it before the cut
            # the friendship graph's items are people (the state's users, same indices); else communities
            comms = () if train.meta.get("square") else train.item_ids
            self.state = as_of(world, int(cut_us), user_ids=train.user_ids, community_ids=comms)
        else:
            self.state = from_interactions(train)
        self.n_items = train.n_items
        square = bool(train.meta.get("square")) or (self.state.n_communities == 0 and self.state.friend_csr().nnz > 0)
        if square and self.pipeline.surface is not Surface.PEOPLE:
            raise ValidationError("model",
                                  f"{self.name}: a friendship graph needs the people surface (pipeline:people)")
        self.pipeline.fit(self.state)
        self.user_ids = train.user_ids
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _content_state(self, train: Interactions, world: Any, cut_us: Any) -> Any:
        """The content protocol: the world as of the cut (content items are the interactions' items: ``--events
        view,reaction``); content indices are the state's own, mapped to the training data's by id."""
        if world is None or cut_us is None or not getattr(world, "content", None) or world.content.num_rows == 0:
            raise ValidationError("model", f"{self.name}: the content surface is evaluated on a store's time split "
                                  "of its content engagements (--dataset STORE --events view,reaction "
                                  "--protocol temporal)")
        state = as_of(world, int(cut_us), user_ids=train.user_ids)
        pos = {str(x): i for i, x in enumerate(train.item_ids.tolist())}
        self.item_of = np.array([pos.get(x, -1) for x in state.content.ids], np.int64)
        if not (self.item_of >= 0).any():
            raise ValidationError("events", f"{self.name}: none of the interactions' items is a content item; "
                                  "the content surface needs content events (--events view,reaction)")
        return state

    def fitted(self) -> dict[str, Any]:
        """The scorer's own validation figures (a learned ranker: feature importance, calibration error, per-source
        comparison on its validation lists); empty for the blend."""
        fitted = getattr(self.pipeline.scorer, "fitted", None)
        return fitted() if callable(fitted) else {}

    def recommend_idx(self, user_idx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` of each user: the whole batch through :meth:`Pipeline.rank_batch` (vectorised sources, one
        ranker prediction), or one :meth:`Pipeline.run` per user with ``batch = False`` — the same answers."""
        kk = min(int(k), MAX_K)
        users = np.asarray(user_idx).tolist()
        out_i = np.full((len(users), kk), -1, np.int64)
        out_s = np.full((len(users), kk), -np.inf, np.float32)
        reqs = [Request(str(self.user_ids[u]), self.pipeline.surface, k=kk, explain=False) for u in users]
        if self.batch:
            answers = self.pipeline.rank_batch(reqs)
        else:
            answers = [[(it.index, it.score) for it in self.pipeline.run(r).items] for r in reqs]
        for row, answer in enumerate(answers):
            if self.item_of is not None:  # content: the state's indices to the data's
                answer = [(int(self.item_of[i]), s) for i, s in answer if i < self.item_of.size]
                answer = [(i, s) for i, s in answer if i >= 0]
            items = [(i, s) for i, s in answer if 0 <= i < self.n_items]  # not in the data: skip
            out_i[row, : len(items)] = [i for i, _ in items]
            out_s[row, : len(items)] = [s for _, s in items]
        return out_i, out_s

    def score_items(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        raise ValidationError("protocol", f"{self.name} ranks its own candidates; sampled protocols are not supported")
