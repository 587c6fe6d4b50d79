"""``Pipeline``: a surface's components run in fixed, named stages — the one place the stage sequence is written.

A request is two halves, and every caller (``belong recommend``, offline evaluation, the ranker's training lists,
the serving engine, batch jobs) uses them:

* :meth:`Pipeline.candidates` — sources -> merge -> hydrate -> filter -> score: the scored candidate list (what
  serving caches per user, what a batch job precomputes);
* :meth:`Pipeline.finish` — live rules -> select -> hydrate -> explain, on a ranked list that may have been made
  earlier: the rules run again only when the state changed since (and their last answer on the same cached list is
  reused while what they read is unchanged, :class:`~belong.pipeline.types.ListMemo`).

:meth:`Pipeline.run` is ``finish(candidates(request))``. A surface is declared in TOML (see :mod:`belong.surfaces`
for the catalogue of shipped surfaces)::

    surface = "communities"
    [[sources]]
    type = "ials_ann"
    [[filters]]
    type = "safety_rules"
    [scorer]
    type = "weighted_rrf"
    [selector]
    type = "top_k"
"""

from __future__ import annotations

import copy
import time
import tomllib
from collections.abc import Callable, Iterable
from typing import Any, Self

import numpy as np

from belong import toml_writer
from belong.domain import Surface
from belong.errors import ValidationError
from belong.pipeline.components import CandidateSource, Filter, Hydrator, Progress, Scorer, Selector, build
from belong.pipeline.types import (
    Candidate,
    Candidates,
    Explanation,
    Finished,
    Item,
    ListMemo,
    Merged,
    MergedArrays,
    Proposals,
    Ranked,
    RankedList,
    Reason,
    Removed,
    Request,
    Response,
    Trace,
    WhyNot,
)
from belong.state import WorldState

SURFACE_KINDS = tuple(s.value for s in Surface)


class Pipeline:
    """Components of one surface; call :meth:`fit` with a state, then :meth:`run` (or the two halves) per request."""

    def __init__(
        self,
        surface: Surface,
        sources: list[CandidateSource],
        filters: list[Filter],
        scorer: Scorer,
        selector: Selector,
        hydrators: list[Hydrator] | None = None,
        description: str = "",
        name: str = "",
    ) -> None:
        names = [s.name for s in sources]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValidationError("sources", f"names must be unique; repeated: {', '.join(sorted(dup))}")
        if not sources:
            raise ValidationError("sources", "a surface needs at least one source")
        self.surface = surface
        #: the catalogue name or file the declaration came from (``communities_ranked``); the kind when unnamed
        self.name = name or surface.value
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
    def from_dict(cls, data: dict[str, Any], name: str = "") -> Pipeline:
        """A pipeline from a parsed declaration. The component types it names must be registered (importing
        :mod:`belong.surfaces` registers every shipped one)."""
        allowed = {"surface", "description", "sources", "hydrators", "filters", "scorer", "selector"}
        extra = sorted(set(data) - allowed)
        if extra:
            raise ValidationError(extra[0], "is not a field of a surface declaration")
        surface_raw = data.get("surface")
        try:
            surface = Surface(str(surface_raw))
        except ValueError:
            raise ValidationError("surface",
                                  f"must be one of {', '.join(SURFACE_KINDS)}, got {surface_raw!r}") from None

        def many(key: str, kind: str) -> list:
            rows = data.get(key, [])
            if not isinstance(rows, list):
                raise ValidationError(key, "must be an array of tables ([[...]])")
            return [build(kind, row, f"{key}[{i}]") for i, row in enumerate(rows)]

        return cls(
            surface,
            sources=many("sources", "source"),
            filters=many("filters", "filter"),
            scorer=build("scorer", data.get("scorer", {"type": "weighted_rrf"}), "scorer"),  # type: ignore[arg-type]
            selector=build("selector", data.get("selector", {"type": "top_k"}), "selector"),  # type: ignore[arg-type]
            hydrators=many("hydrators", "hydrator"),
            description=str(data.get("description", "")),
            name=name,
        )

    @classmethod
    def from_toml(cls, text: str, name: str = "") -> Pipeline:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationError("surface", f"is not valid TOML: {exc}") from None
        return cls.from_dict(data, name)

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

    def fresh(self) -> Pipeline:
        """An unfitted copy of this declaration (new components, nothing shared)."""
        return Pipeline.from_dict(self.to_dict(), self.name)

    def only(self, source_names: Iterable[str]) -> Pipeline:
        """The same pipeline (same fitted components) restricted to some sources: evaluate a source alone."""
        wanted = list(source_names)
        by_name = {s.name: s for s in self.sources}
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise ValidationError("source", f"unknown source {missing[0]!r}; this surface has: {', '.join(by_name)}")
        sub = Pipeline(self.surface, [by_name[n] for n in wanted], self.filters, copy.copy(self.scorer),
                       self.selector, self.hydrators, self.description, f"{self.name}/{'+'.join(wanted)}")
        sub.state = self.state
        return sub

    # ------------------------------------------------------------------------------------------- fitting
    def components(self) -> list:
        return [*self.sources, *self.hydrators, *self.filters, self.scorer, self.selector]

    def fit(self, state: WorldState, progress: Progress | None = None, *, candidates_only: bool = False) -> Self:
        """Prepare every component on ``state``: sources (train their models, build indexes), hydrators, filters,
        then the scorer — handed a factory of fresh copies of this candidate stage, to learn from — and the
        selector. ``candidates_only``: the candidate stage alone (what a learning scorer fits on its cut)."""
        for comp in (*self.sources, *self.hydrators, *self.filters):
            comp.prepare(state)
        if not candidates_only:
            self.scorer.fit(state, self.fresh, progress)
            self.selector.prepare(state)
        self.state = state
        return self

    # ------------------------------------------------------------------------------------------- items
    def item_ids(self) -> list[str]:
        """The surface's item ids by dense index (the live list: it grows as new items arrive)."""
        st = self._state()
        if self.surface is Surface.COMMUNITIES:
            return st.communities.ids
        return st.users.ids if self.surface is Surface.PEOPLE else st.content.ids

    def item_id(self, item: int) -> str:
        return self.item_ids()[item]

    def _labels(self) -> Callable[[int], str]:
        """:meth:`item_label` with the state and surface looked up once (a request labels each item it returns)."""
        if self.surface is Surface.COMMUNITIES:
            return self._state().communities.name.__getitem__
        return self.item_label

    def item_label(self, item: int) -> str:
        """A display name: community name, user id, or the first words of a content item."""
        st = self._state()
        if self.surface is Surface.COMMUNITIES:
            return st.communities.name[item]
        if self.surface is Surface.CONTENT:
            text = st.content.text[item]
            return (text[:40] + "…") if len(text) > 40 else text
        return st.users.ids[item]

    def _state(self) -> WorldState:
        if self.state is None:
            raise RuntimeError("pipeline: call fit(state) before run()")
        return self.state

    def _check(self, request: Request) -> WorldState:
        state = self._state()
        if request.surface is not self.surface:
            raise ValidationError("surface", f"this pipeline serves {self.surface.value}, not {request.surface.value}")
        state.profile(request)  # unknown ids fail here, before any work
        return state

    # ------------------------------------------------------------------------------------------- stages
    def run(self, request: Request) -> Response:
        """One request, both halves: ``finish(candidates(request))``."""
        t0 = time.perf_counter()
        cands = self.candidates(request)
        done = self.finish(request, cands.ranked, made_at=cands.state_version)
        stage_ms = dict(cands.stage_ms)
        for name, ms in done.stage_ms.items():
            stage_ms[name] = stage_ms.get(name, 0.0) + ms
        stage_ms["total"] = (time.perf_counter() - t0) * 1e3
        trace = Trace(stage_ms, cands.source_ms, cands.source_counts, cands.removed + done.removed,
                      cands.n_candidates)
        return Response(self.surface.value, request.user_id, done.items, trace)

    def candidates(self, request: Request, *, depth: int | None = None, score: bool = True) -> Candidates:
        """Sources -> merge -> hydrate -> filter -> score: the scored list, best first (ties by item), at most
        ``depth`` long. ``score=False``: the merged, filtered candidates in merge order, unscored (what a scorer
        that learns from candidates is trained on)."""
        state = self._check(request)
        t0 = time.perf_counter()
        found: list[list[Candidate]] = []
        source_ms: dict[str, float] = {}
        skip = self.scorer.inactive_sources() if score else frozenset()
        for src in self.sources:
            if src.name in skip:  # the fitted scorer gives it no weight: not run
                found.append([])
                source_ms[src.name] = 0.0
                continue
            ts = time.perf_counter()
            found.append(src.generate(request, state))
            source_ms[src.name] = (time.perf_counter() - ts) * 1e3
        out = self._merge_filter(request, state, found, source_ms, t0)
        if not score:
            return out
        t0 = time.perf_counter()
        return self._order(out, self.scorer.score(request, state, [m for m, _ in out.ranked]), depth, t0)

    def candidates_batch(self, requests: list[Request], *, depth: int | None = None) -> list[Candidates]:
        """:meth:`candidates` of many requests at once, equal to one call each: every source proposes for the
        whole batch (:meth:`~belong.pipeline.components.CandidateSource.generate_batch`: vectorised where a
        source has it, one request at a time otherwise), merge and filters run per request, and the scorer
        scores every list in one call (:meth:`~belong.pipeline.components.Scorer.score_batch`: a learned ranker
        predicts one matrix). Offline work (evaluation, batch jobs), not the serving hot path."""
        if not requests:
            return []
        state = self._check(requests[0])
        for r in requests[1:]:
            self._check(r)
        t0 = time.perf_counter()
        skip = self.scorer.inactive_sources()
        per_source: list[list[list[Candidate]]] = [
            [[] for _ in requests] if src.name in skip else src.generate_batch(requests, state) for src in self.sources]
        src_ms = (time.perf_counter() - t0) * 1e3 / len(requests) / len(self.sources)
        outs = [self._merge_filter(r, state, [found[i] for found in per_source],
                                   dict.fromkeys((s.name for s in self.sources), src_ms), time.perf_counter())
                for i, r in enumerate(requests)]
        t0 = time.perf_counter()
        scores = self.scorer.score_batch(requests, state, [[m for m, _ in o.ranked] for o in outs])
        return [self._order(o, sc, depth, t0) for o, sc in zip(outs, scores, strict=True)]

    def rank_batch(self, requests: list[Request], *, arrays: bool = True) -> list[list[tuple[int, float]]]:
        """``(item index, score)`` of each request's answer, best first: the items and scores :meth:`run` gives
        (same selector, same rules), without building the displayed items (no explanations, no hydration of the
        chosen few): what offline evaluation reads.

        With ``arrays`` (the default) the stages run on arrays, not candidate objects
        (:meth:`_rank_arrays`); ``arrays=False``: through :meth:`select_batch` (candidate objects). Both give the
        same lists."""
        if arrays and requests:
            return self._rank_arrays(requests)
        return [[(m.item, s) for m, s in chosen] for chosen in self.select_batch(requests)]

    def select_batch(self, requests: list[Request], *, arrays: bool = True) -> list[list[tuple[Merged, float]]]:
        """Each request's chosen candidates and scores, best first (:meth:`rank_batch` with the candidates' features,
        e.g. an exploration slot's ``propensity``, and the hydrators' features of the chosen few).

        With ``arrays`` (the default; requests with ``explain`` go the object path) the stages run on arrays
        (:meth:`_score_arrays`) and only the chosen rows become candidate objects (per source its rank and score,
        ``aux`` in the reason's data; no reason texts): the same items, scores and features as ``arrays=False``,
        which runs :meth:`candidates_batch` and the selector on candidate objects (the loop's serving path, about
        5x the CPU; ``tests/pipeline/test_batch.py`` checks the two agree)."""
        if arrays and requests and not any(r.explain for r in requests):
            return self._select_arrays(requests)
        out = []
        for r, cands in zip(requests, self.candidates_batch(requests), strict=True):
            state = self._state()
            if cands.state_version == state.version:  # as in finish(): the rules could change nothing
                rows = cands.ranked.light(0, len(cands.ranked))
                chosen = self._select(r, [m for m, _ in rows], [s for _, s in rows], None, cands.ranked.shared)
            else:
                chosen = self.finish(r, cands.ranked, made_at=cands.state_version).chosen
            out.append([(m, float(s)) for m, s in chosen])
        return out

    def _select_arrays(self, requests: list[Request]) -> list[list[tuple[Merged, float]]]:
        """:meth:`select_batch` on arrays: :meth:`_score_arrays`, the selector's positions (or, for a selector
        without an array form, its choice among candidate objects carrying the hydrators' features, as the object
        path gives it), then the chosen rows as candidate objects with the hydrators' features."""
        state = self._state()
        lists, scored = self._score_arrays(requests)
        out: list[list[tuple[Merged, float]]] = []
        for r, m, sc in zip(requests, lists, scored, strict=True):
            sc = np.asarray(sc, np.float64)
            pos = self.selector.select_arrays(r, m.items, sc)
            if pos is None:
                if self.hydrators and len(m) and not self.scorer.reads_features:
                    for h in self.hydrators:
                        m.features.update(h.hydrate_arrays(r, state, m.items))
                objs = _as_merged(m)
                order = sorted(range(len(objs)), key=lambda j: (-sc[j], objs[j].item))
                chosen = self.selector.select(r, [objs[j] for j in order], sc[order])
                out.append([(c, float(s)) for c, s in chosen])
                continue
            top = m.take(pos)
            if self.hydrators and len(top) and not self.scorer.reads_features:
                for h in self.hydrators:
                    top.features.update(h.hydrate_arrays(r, state, top.items))
            out.append(list(zip(_as_merged(top), sc[pos].tolist(), strict=True)))
        return out

    def _rank_arrays(self, requests: list[Request]) -> list[list[tuple[int, float]]]:
        """:meth:`rank_batch` on arrays: every source proposes for the whole batch as arrays
        (:meth:`~belong.pipeline.components.CandidateSource.propose_batch`), each request's proposals are merged
        into rank / score matrices (:class:`MergedArrays`), the filters give keep masks, the hydrators feature
        arrays (only for a scorer that reads them), the scorer scores arrays (or, where it has no array path,
        candidate objects rebuilt from them) and the selector picks positions. Every step is the object path's
        rule on arrays: the same items, the same scores (see ``tests/pipeline/test_batch.py``)."""
        lists, scored = self._score_arrays(requests)
        out = []
        for r, m, sc in zip(requests, lists, scored, strict=True):
            sc = np.asarray(sc, np.float64)
            pos = self.selector.select_arrays(r, m.items, sc)
            if pos is None:
                objs = _as_merged(m)
                order = sorted(range(len(objs)), key=lambda j: (-sc[j], objs[j].item))
                chosen = self.selector.select(r, [objs[j] for j in order], sc[order])
                out.append([(c.item, float(s)) for c, s in chosen])
            else:
                out.append(list(zip(m.items[pos].tolist(), sc[pos].tolist(), strict=True)))
        return out

    def candidate_arrays(self, requests: list[Request], *, hydrate: bool = True,
                         skip: frozenset[str] = frozenset()) -> list[MergedArrays]:
        """The unscored candidate stage of a batch on arrays: each request's merged candidates in merge order,
        filtered (keep masks) and, with ``hydrate``, with the hydrators' features — the candidates of
        :meth:`candidates` with ``score=False``, row for row, without candidate objects (offline work: training
        lists, :meth:`_score_arrays`). Sources named in ``skip`` are not run (their proposals are empty)."""
        if not requests:
            return []
        state = self._check(requests[0])
        for r in requests[1:]:
            self._check(r)
        names = [s.name for s in self.sources]
        per_source = [[Proposals.empty() for _ in requests] if src.name in skip else src.propose_batch(requests, state)
                      for src in self.sources]
        lists: list[MergedArrays] = []
        for i, r in enumerate(requests):
            m = _merge_arrays([found[i].best(src.config.k) for src, found in zip(self.sources, per_source,
                                                                                   strict=True)], names)
            if len(m):
                keep = np.ones(len(m), bool)
                for f in self.filters:
                    keep &= f.keep_mask(r, state, m.items)
                if not keep.all():
                    m = m.take(keep)
            if hydrate and len(m):
                for h in self.hydrators:
                    m.features.update(h.hydrate_arrays(r, state, m.items))
            lists.append(m)
        return lists

    def _score_arrays(self, requests: list[Request]) -> tuple[list[MergedArrays], list[np.ndarray]]:
        """The candidate stage of a batch on arrays (:meth:`_rank_arrays`): each request's merged, filtered
        candidates (hydrated only for a scorer that reads features) and their scores."""
        state = self._check(requests[0])
        lists = self.candidate_arrays(requests, hydrate=self.scorer.reads_features,
                                      skip=self.scorer.inactive_sources())
        scored = self.scorer.score_arrays(requests, state, lists)
        if scored is None:
            scored = self.scorer.score_batch(requests, state, [_as_merged(m) for m in lists])
        return lists, scored

    def _merge_filter(self, request: Request, state: WorldState, found: list[list[Candidate]],
                      source_ms: dict[str, float], t0: float) -> Candidates:
        """Merge the sources' proposals (each source's best ``k``, ties by item), hydrate and filter: the
        unscored list (in ``ranked.cands`` order) of :meth:`candidates`."""
        out = Candidates(RankedList(), state.version)
        out.source_ms = source_ms
        merged: dict[int, Merged] = {}
        for src, props in zip(self.sources, found, strict=True):
            props = sorted(props, key=lambda c: (-c.score, c.item))[: src.config.k]
            out.source_counts[src.name] = len(props)
            for rank, c in enumerate(props):
                merged.setdefault(c.item, Merged(c.item)).hits[src.name] = (rank, c)
        cands = list(merged.values())
        out.n_candidates = len(cands)
        t0 = _stage(out.stage_ms, "sources", t0)
        for h in self.hydrators:
            h.hydrate(request, state, cands)
        t0 = _stage(out.stage_ms, "hydrate", t0)
        for f in self.filters:
            res = f.apply(request, state, cands)
            cands = res.kept
            out.removed.extend(Removed(m.item, f.name, why) for m, why in res.removed)
        _stage(out.stage_ms, "filter", t0)
        out.ranked = RankedList((m, float("nan")) for m in cands)
        return out

    @staticmethod
    def _order(out: Candidates, scores: np.ndarray, depth: int | None, t0: float) -> Candidates:
        """Sort the merged list by ``scores`` (best first, ties by item), at most ``depth`` long."""
        cands = [m for m, _ in out.ranked]
        order = sorted(range(len(cands)), key=lambda i: (-scores[i], cands[i].item))
        out.ranked = RankedList((cands[i], float(scores[i])) for i in order[:depth])
        _stage(out.stage_ms, "score", t0)
        return out

    def finish(self, request: Request, ranked: Ranked, *, made_at: int | None = None, all_rules: bool = False,
               memo: ListMemo | None = None, stage_ms: dict[str, float] | None = None) -> Finished:
        """Live rules -> select -> hydrate -> explain, on ``ranked`` (best first).

        The rules (the surface's filters) run on the live state over just enough of the list to fill ``k`` (all of
        it with ``all_rules``) — unless the list was made at this very state version (``made_at``), when they could
        change nothing. ``memo`` (per cached list) keeps each stage's last answer while what it reads is
        unchanged (see :class:`ListMemo`). Stage times go to ``stage_ms`` (the answer's own dict when not given);
        explaining counts as hydration (the chosen items' last step)."""
        state = self._state()
        t0 = time.perf_counter()
        if memo is not None and memo.ranked is not ranked:
            memo.reset(ranked)
        removed: list[Removed] = []
        if made_at is not None and made_at == state.version and not all_rules:
            rows = ranked.light(0, len(ranked))
            kept, scores = [m for m, _ in rows], [s for _, s in rows]
        else:
            kept, scores, removed = self._rules(request, state, ranked, all_rules, None if all_rules else memo)
        t1 = time.perf_counter()
        chosen = self._select(request, kept, scores, memo, ranked.shared)
        t2 = time.perf_counter()
        hydration = self._hydrate(request, state, chosen, memo, ranked.shared)
        if memo is not None and hydration is not None and memo.items is not None and memo.chosen is chosen \
                and memo.hydration == hydration:
            items = memo.items
        else:
            ids, label = self.item_ids(), self._labels()
            items = [self._item(ranked, m, score, rank, memo, ids, label)
                     for rank, (m, score) in enumerate(chosen, start=1)]
            if memo is not None and hydration is not None and memo.chosen is chosen:
                memo.hydration, memo.items = hydration, items
        t3 = time.perf_counter()
        ms = {} if stage_ms is None else stage_ms
        ms["rules"], ms["select"], ms["hydrate"] = (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
        return Finished(chosen, items, removed, hydration, ms)

    def _rules(self, request: Request, state: WorldState, ranked: Ranked, all_rules: bool, memo: ListMemo | None
               ) -> tuple[list[Merged], list[float], list[Removed]]:
        """The filters on the live state over chunks of the list until ``k`` survive (all of it: ``all_rules``);
        the memo's last answer while every filter's revision is unchanged."""
        key: tuple | None = None
        if memo is not None:
            revs = []
            for f in self.filters:
                rev = f.revision(request, state)
                if rev is None:
                    break
                revs.append(rev)
            else:
                key = (request.k, request.new_user, *revs)
                if memo.rules_key == key and memo.kept is not None and memo.kept_scores is not None:
                    return memo.kept, memo.kept_scores, []
        kept: list[Merged] = []
        scores: list[float] = []
        removed: list[Removed] = []
        step = len(ranked) if all_rules else request.k + max(4, request.k // 4)  # a few spare for removals
        i = 0
        while all_rules or len(kept) < request.k:  # the list's end: an empty chunk (a stored list's length is
            chunk = ranked.light(i, i + step)        # known only once it is all parsed)
            if not chunk:
                break
            score_of = {m.item: s for m, s in chunk}
            ms = [m for m, _ in chunk]
            for f in self.filters:
                res = f.apply(request, state, ms)
                ms = res.kept
                removed.extend(Removed(m.item, f.name, why) for m, why in res.removed)
            kept.extend(ms)
            scores.extend(score_of[m.item] for m in ms)
            i += step
        if memo is not None and key is not None:
            memo.set_rules(key, kept, scores)
        return kept, scores, removed

    def _select(self, request: Request, kept: list[Merged], scores: list[float], memo: ListMemo | None,
                shared: bool) -> list[tuple[Merged, float]]:
        """The selector's answer; reused with the memoised rules answer when the selector is deterministic and
        writes nothing. Objects others hold (a memoised answer, a shared list) are copied for a selector that
        writes to them."""
        sel = self.selector
        reuse = memo is not None and not sel.mutates and sel.deterministic and memo.kept is kept
        if reuse and memo is not None and memo.chosen is not None:
            return memo.chosen
        if sel.mutates and (shared or (memo is not None and memo.kept is kept)):
            kept = [Merged(m.item, m.hits, dict(m.features)) for m in kept]
        chosen = sel.select(request, kept, np.asarray(scores, np.float64))
        if reuse and memo is not None:
            memo.set_chosen(chosen)
        return chosen

    def _hydrate(self, request: Request, state: WorldState, chosen: list[tuple[Merged, float]],
                 memo: ListMemo | None, shared: bool) -> Any:
        """The hydrators on the chosen items (in place; on copies for a shared list), skipped when these same
        objects were hydrated at the same revisions. Returns those revisions (None: not every hydrator gives one)."""
        if shared:
            fresh = [Merged(m.item, m.hits, dict(m.features)) for m, _ in chosen]
            chosen[:] = [(f, s) for f, (_, s) in zip(fresh, chosen, strict=True)]
            for h in self.hydrators:
                h.hydrate(request, state, fresh)
            return None
        ms = memo.chosen_items if memo is not None and memo.chosen is chosen else None
        if ms is None:
            ms = [m for m, _ in chosen]
        key: tuple | None = None
        if memo is not None:
            revs = []
            for h in self.hydrators:
                rev = h.revision(request, state, ms)
                if rev is None:
                    break
                revs.append(rev)
            else:
                key = tuple(revs)
                if memo.chosen is chosen and memo.hydration == key:
                    return key
        for h in self.hydrators:
            h.hydrate(request, state, ms)
        if memo is not None and memo.chosen is chosen and memo.hydration != key:
            memo.hydration, memo.items = None, None  # hydrated anew: the items are rebuilt
        return key

    def why_not(self, request: Request, item: str, *, made: Candidates | None = None,
                done: Finished | None = None) -> WhyNot:
        """Why ``item`` (an item id of this surface) is or is not in ``request``'s answer: not a candidate (no source
        proposed it), removed by a filter (and why), ranked below the cut (at which position), left out by the
        selector, or shown (at which rank). The same two halves as :meth:`run`, read item by item; ``made`` and
        ``done``: the two halves already run for this very request (the dashboard's page has them), not rerun."""
        state = self._check(request)
        table, kind = {Surface.COMMUNITIES: (state.communities, "community"), Surface.PEOPLE: (state.users, "user"),
                       Surface.CONTENT: (state.content, "content")}[self.surface]
        idx = table.get(item, kind)
        if made is None:
            made, done = self.candidates(request), None
        removed = next((r for r in made.removed if r.item == idx), None)
        pos = next((p for p, (m, _) in enumerate(made.ranked, start=1) if m.item == idx), None)
        hit = made.ranked.full(idx)
        sources = {s: r for s, (r, _) in hit.hits.items()} if hit is not None else {}
        if removed is not None:
            return WhyNot(item, "removed", f"removed by {removed.filter}: {removed.reason}", filter=removed.filter,
                          reason=removed.reason)
        if pos is None:
            asked = ", ".join(made.source_counts)
            return WhyNot(item, "not_a_candidate", f"no source proposed it (sources asked: {asked})")
        if done is None:
            done = self.finish(request, made.ranked, made_at=made.state_version)
        shown = next((it for it in done.items if it.index == idx), None)
        score = float(made.ranked[pos - 1][1])
        if shown is not None:
            return WhyNot(item, "shown", f"shown at rank {shown.rank}", sources, position=pos, rank=shown.rank,
                          score=score)
        cut = done.items[-1].score if done.items else None
        if pos > request.k:
            text = f"ranked {pos} of {len(made.ranked)} candidates, below the {request.k} shown"
            return WhyNot(item, "below_cut", text, sources, position=pos, score=score, cut_score=cut)
        return WhyNot(item, "not_selected", f"ranked {pos}, left out by the {self.selector.name} selector", sources,
                      position=pos, score=score, cut_score=cut)

    # ------------------------------------------------------------------------------------------- explain
    def explain(self, m: Merged, reasons: dict[str, tuple[int, str]] | None = None) -> Explanation:
        """The sources of ``m`` strongest first (by the scorer's contributions, else by rank) with their reasons,
        and the sentence shown (the first two distinct reasons). ``reasons``: each source's rank and reason text
        (:meth:`Ranked.reasons <belong.pipeline.types.Ranked.reasons>` of the list ``m`` came from, whose ranks
        are ``m``'s), read instead of ``m``'s candidates."""
        if reasons is None:
            reasons = {s: (r, c.reason.text) for s, (r, c) in m.hits.items()}
        by_rank = getattr(self.scorer, "rank_contributions", None)  # the same weights, from the ranks at hand
        contrib = getattr(self.scorer, "contributions", None)
        weight = by_rank(reasons) if by_rank is not None else contrib(m) if contrib is not None else None
        if weight is not None:
            # by (-weight, source): sorted by name, then stably by weight (reverse keeps ties in name order)
            order = tuple(sorted(sorted(reasons), key=weight.__getitem__, reverse=True))
        else:  # by rank: the order of the weights -rank
            order = tuple(sorted(reasons, key=lambda s: (reasons[s][0], s)))
        texts_of = {s: reasons[s][1] for s in order}
        shown: list[str] = []  # the first two distinct reasons
        for s in order:
            t = texts_of[s]
            if t and t not in shown:
                shown.append(t)
                if len(shown) == 2:
                    break
        return Explanation(order, texts_of, "; ".join(shown))

    def _item(self, ranked: Ranked, m: Merged, score: float, rank: int, memo: ListMemo | None, ids: list[str],
              label: Callable[[int], str]) -> Item:
        how = memo.explained.get(m.item) if memo is not None else None
        if how is None and (how := ranked.explained(m.item)) is not None and memo is not None:
            memo.explained[m.item] = how  # made when the list was stored (by this pipeline: precomputed.py)
        if how is None:
            e = self.explain(m, ranked.reasons(m.item))  # the list's reason texts (None: not in it, m's own)
            sources, reasons, text = e.sources, e.reasons, e.text
            if memo is not None:  # strings in flat tuples: untracked by the collector's first pass
                memo.explained[m.item] = (sources, tuple([x for pair in reasons.items() for x in pair]), text)
        else:
            sources, flat, text = how
            reasons = dict(zip(flat[::2], flat[1::2], strict=True))
        return Item(ids[m.item], m.item, score, rank, sources, text, reasons, label(m.item), m.features)


def _merge_arrays(found: list[Proposals], sources: list[str]) -> MergedArrays:
    """The merge of :meth:`Pipeline._merge_filter` on arrays: items in the order they are first proposed (source
    by source, best first), each source's rank, score and ``aux`` in its column (a source proposing an item twice:
    its later row, as the merge's overwrite)."""
    n_src = len(found)
    sizes = [p.items.size for p in found]
    total = sum(sizes)
    if total == 0:
        return MergedArrays(np.empty(0, np.int64), np.empty((0, n_src), np.int64), np.empty((0, n_src)),
                            np.empty((0, n_src)), sources)
    items = np.concatenate([p.items for p in found])
    col = np.repeat(np.arange(n_src), sizes)
    rank = np.concatenate([np.arange(k, dtype=np.int64) for k in sizes])
    uniq, first, inv = np.unique(items, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # merge order: by first proposal
    row_of = np.empty(uniq.size, np.int64)
    row_of[order] = np.arange(uniq.size)
    row = row_of[inv.ravel()]
    ranks = np.full((uniq.size, n_src), -1, np.int64)
    ranks[row, col] = rank
    scores = np.full((uniq.size, n_src), np.nan)
    scores[row, col] = np.concatenate([p.scores for p in found])
    aux = np.full((uniq.size, n_src), np.nan)
    if any(p.aux is not None for p in found):
        aux[row, col] = np.concatenate([p.aux if p.aux is not None else np.full(p.items.size, np.nan)
                                        for p in found])
    return MergedArrays(uniq[order], ranks, scores, aux, sources)


def _as_merged(m: MergedArrays) -> list[Merged]:
    """Candidate objects from merged arrays (for a scorer or selector without an array path): per source its rank
    and a candidate with the score (the reason's data carries ``aux`` where the source gave one), the features."""
    out = []
    feats = {k: v.tolist() for k, v in m.features.items()}
    ranks, scores, aux = m.ranks.tolist(), m.scores.tolist(), m.aux.tolist()
    plain = Reason("")
    for r, item in enumerate(m.items.tolist()):
        hits: dict[str, tuple[int, Candidate]] = {}
        for j, name in enumerate(m.sources):
            rank = ranks[r][j]
            if rank >= 0:
                a = aux[r][j]
                hits[name] = (rank, Candidate(item, name, scores[r][j], plain if a != a else Reason("", {"aux": a})))
        out.append(Merged(item, hits, {k: v[r] for k, v in feats.items() if v[r] == v[r]}))
    return out


def _stage(stage_ms: dict[str, float], name: str, t0: float) -> float:
    now = time.perf_counter()
    stage_ms[name] = (now - t0) * 1e3
    return now
