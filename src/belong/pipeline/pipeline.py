"""``Pipeline``: a surface's components run in fixed, named stages.

sources -> hydrate -> filter -> score -> select -> respond. Every stage is timed into the response's
:class:`~belong.pipeline.types.Trace`, and every filter's removals are recorded with their reasons. The same
object serves ``belong recommend``, ``belong evaluate --model pipeline:SURFACE`` (through
:mod:`belong.pipeline.evaluable`), batch jobs and, later, the API.

A surface is declared in TOML (``belong/surfaces/<name>.toml`` ships ``communities``, ``people``, ``content``)::

    surface = "communities"
    [[sources]]
    type = "ials_ann"
    weight = 1.0
    k = 200
    [[filters]]
    type = "already_connected"
    [scorer]
    type = "weighted_rrf"
    [selector]
    type = "top_k"
"""

from __future__ import annotations

import copy
import time
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any, Self

from belong import toml_writer
from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import (
    CandidateSource,
    Filter,
    Hydrator,
    Scorer,
    Selector,
    build,
)
from belong.pipeline.state import WorldState
from belong.pipeline.types import Item, Merged, Removed, Request, Response, Trace

SHIPPED_SURFACES = tuple(s.value for s in Surface)


def _import_components() -> None:
    """Importing these modules registers every shipped component type."""
    import belong.pipeline.blend  # noqa: F401
    import belong.pipeline.filters  # noqa: F401
    import belong.ranking  # noqa: F401  (lgbm_ranker scorer, mmr selector, safety rules)
    import belong.sources  # noqa: F401


class Pipeline:
    """Components of one surface; call :meth:`fit` with a state, then :meth:`run` per request."""

    def __init__(
        self,
        surface: Surface,
        sources: list[CandidateSource],
        filters: list[Filter],
        scorer: Scorer,
        selector: Selector,
        hydrators: list[Hydrator] | None = None,
        description: str = "",
    ) -> None:
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValidationError("sources", f"names must be unique; repeated: {', '.join(sorted(dup))}")
        if not sources:
            raise ValidationError("sources", "a surface needs at least one source")
        self.surface = surface
        self.description = description
        self.sources = sources
        self.hydrators = hydrators or []
        self.filters = filters
        self.scorer = scorer
        self.selector = selector
        self.scorer.source_weights = {s.name: s.config.weight for s in sources}
        self.state: WorldState | None = None

    # ------------------------------------------------------------------------------------------- declarations
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        _import_components()
        allowed = {"surface", "description", "sources", "hydrators", "filters", "scorer", "selector"}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ValidationError(extra[0], "is not a field of a surface declaration")
        surface_raw = data.get("surface")
        try:
            surface = Surface(surface_raw)
        except ValueError:
            raise ValidationError("surface", f"must be one of {', '.join(SHIPPED_SURFACES)}, got {surface_raw!r}") from None

        def many(key: str, kind: str) -> list:
            rows = data.get(key, [])
            if not isinstance(rows, list):
                raise ValidationError(key, "must be an array of tables ([[...]])")
            return [build(kind, row, f"{key}[{i}]") for i, row in enumerate(rows)]

        return cls(
            surface,
            sources=many("sources", "source"),  # type: ignore[arg-type]
            filters=many("filters", "filter"),  # type: ignore[arg-type]
            scorer=build("scorer", data.get("scorer", {"type": "weighted_rrf"}), "scorer"),  # type: ignore[arg-type]
            selector=build("selector", data.get("selector", {"type": "top_k"}), "selector"),  # type: ignore[arg-type]
            hydrators=many("hydrators", "hydrator"),  # type: ignore[arg-type]
            description=str(data.get("description", "")),
        )

    @classmethod
    def from_toml(cls, text: str) -> Pipeline:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError("surface", f"is not valid TOML: {exc}") from None
        return cls.from_dict(data)

    @classmethod
    def load(cls, name_or_path: str | Path) -> Pipeline:
        """A shipped surface by name (``communities``, ``people``, ``content``) or a TOML file path."""
        text = str(name_or_path)
        if text in SHIPPED_SURFACES:
            return cls.from_toml(resources.files("belong.surfaces").joinpath(f"{text}.toml").read_text("utf-8"))
        path = Path(text)
        if not path.is_file():
            raise ValidationError("surface", f"must be one of {', '.join(SHIPPED_SURFACES)} or a TOML file; got {text!r}")
        return cls.from_toml(path.read_text("utf-8"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"surface": self.surface.value}
        if self.description:
            out["description"] = self.description
        out["sources"] = [s.to_dict() for s in self.sources]
        if self.hydrators:
            out["hydrators"] = [h.to_dict() for h in self.hydrators]
        out["filters"] = [f.to_dict() for f in self.filters]
        out["scorer"] = self.scorer.to_dict()
        out["selector"] = self.selector.to_dict()
        return out

    def to_toml(self) -> str:
        return toml_writer.dumps(self.to_dict())

    def only(self, source_names: Iterable[str]) -> Pipeline:
        """The same pipeline (same fitted components) restricted to some sources: evaluate a source alone."""
        wanted = list(source_names)
        by_name = {s.name: s for s in self.sources}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ValidationError("source", f"unknown source {missing[0]!r}; this surface has: {', '.join(by_name)}")
        sub = Pipeline(self.surface, [by_name[n] for n in wanted], self.filters, copy.copy(self.scorer),
                       self.selector, self.hydrators, self.description)
        sub.state = self.state
        return sub

    # ------------------------------------------------------------------------------------------- running
    def components(self) -> list:
        return [*self.sources, *self.hydrators, *self.filters, self.scorer, self.selector]

    def fit(self, state: WorldState) -> Self:
        """Prepare every component on ``state`` (train the sources' models, build indexes)."""
        for comp in self.components():
            comp.prepare(state)
        self.state = state
        return self

    def item_id(self, item: int) -> str:
        return self.item_ids()[item]

    def item_ids(self) -> list[str]:
        """The surface's item ids by dense index (the live list: it grows as new items arrive)."""
        st = self._state()
        if self.surface is Surface.COMMUNITIES:
            return st.communities.ids
        return st.users.ids if self.surface is Surface.PEOPLE else st.content.ids

    def item_label(self, item: int) -> str:
        """A display name: community name, user id, or the first words of a content item."""
        st = self._state()
        if self.surface is Surface.COMMUNITIES:
            return st.c_name[item]
        if self.surface is Surface.CONTENT:
            text = st.x_text[item]
            return (text[:40] + "…") if len(text) > 40 else text
        return st.users.ids[item]

    def _state(self) -> WorldState:
        if self.state is None:
            raise RuntimeError("pipeline: call fit(state) before run()")
        return self.state

    def run(self, request: Request) -> Response:
        state = self._state()
        if request.surface is not self.surface:
            raise ValidationError("surface", f"this pipeline serves {self.surface.value}, not {request.surface.value}")
        trace = Trace()
        t_all = time.perf_counter()
        t0 = time.perf_counter()
        state.profile(request)  # unknown ids fail here, before any work
        merged: dict[int, Merged] = {}
        for src in self.sources:
            ts = time.perf_counter()
            cands = src.generate(request, state)
            cands = sorted(cands, key=lambda c: (-c.score, c.item))[: src.config.k]
            trace.source_ms[src.name] = (time.perf_counter() - ts) * 1e3
            trace.source_counts[src.name] = len(cands)
            for rank, c in enumerate(cands):
                merged.setdefault(c.item, Merged(c.item)).hits[src.name] = (rank, c)
        cands_m = list(merged.values())
        trace.n_candidates = len(cands_m)
        t0 = self._stage(trace, "sources", t0)
        for h in self.hydrators:
            h.hydrate(request, state, cands_m)
        t0 = self._stage(trace, "hydrate", t0)
        for f in self.filters:
            res = f.apply(request, state, cands_m)
            cands_m = res.kept
            trace.removed.extend(Removed(m.item, f.name, why) for m, why in res.removed)
        t0 = self._stage(trace, "filter", t0)
        scores = self.scorer.score(request, state, cands_m)
        t0 = self._stage(trace, "score", t0)
        chosen = self.selector.select(request, cands_m, scores)
        t0 = self._stage(trace, "select", t0)
        items = [self._item(m, score, rank) for rank, (m, score) in enumerate(chosen, start=1)]
        self._stage(trace, "respond", t0)
        trace.stage_ms["total"] = (time.perf_counter() - t_all) * 1e3
        return Response(self.surface.value, request.user_id, items, trace)

    @staticmethod
    def _stage(trace: Trace, name: str, t0: float) -> float:
        now = time.perf_counter()
        trace.stage_ms[name] = (now - t0) * 1e3
        return now

    def _item(self, m: Merged, score: float, rank: int) -> Item:
        contrib = getattr(self.scorer, "contributions", None)
        weight = contrib(m) if contrib else {s: -r for s, (r, _) in m.hits.items()}
        order = sorted(m.hits, key=lambda s: (-weight[s], s))
        reasons = {s: m.hits[s][1].reason.text for s in order}
        texts = list(dict.fromkeys(reasons[s] for s in order if reasons[s]))
        return Item(
            id=self.item_id(m.item), index=m.item, score=score, rank=rank, sources=order,
            explanation="; ".join(texts[:2]), reasons=reasons, features=dict(m.features),
        )
