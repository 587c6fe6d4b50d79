"""Contracts of pipeline components (candidate sources, filters, scorers, selectors) as pytest tests, run on the toy
world and a small simulated world."""

from __future__ import annotations

import copy
import math
from typing import Any, ClassVar

import numpy as np
import orjson
import pytest
import scipy.sparse as sp

from belong import surfaces
from belong.ann import AnnIndex
from belong.domain import Surface
from belong.errors import UnknownIdError
from belong.pipeline import NewUser, Pipeline, Request
from belong.pipeline.components import CandidateSource, Filter, Scorer, Selector
from belong.pipeline.types import Merged, Proposals
from belong.simulate import simulate_world
from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world

SURFACES = list(Surface)
#: the worlds the contracts run on: the hand-made toy world and a small simulated one
WORLDS = ("toy", "simulated")
#: sign-up facts of the brand-new user every contract serves
NEW_USER = NewUser(locale="en", interests=("gaming",))


def world_state(name: str) -> WorldState:
    """A fresh state of one of :data:`WORLDS`."""
    if name == "toy":
        return from_world(toy_world())
    if name == "simulated":
        return from_world(simulate_world(300, 30, seed=1))
    raise ValueError(f"unknown world {name!r}; known: {', '.join(WORLDS)}")


def sample_users(state: WorldState, n: int = 12, seed: int = 0) -> list[str]:
    """``n`` user ids of ``state``, drawn without replacement (the same ones for the same seed)."""
    rng = np.random.default_rng(seed)
    return [state.users.ids[i] for i in rng.choice(state.n_users, min(n, state.n_users), replace=False)]


def owned(state: WorldState, surface: Surface, uid: str) -> set[int]:
    """What a user already has on a surface (their communities; their friends and themselves; content they engaged
    with): never a candidate."""
    u = state.users.index[uid]
    if surface is Surface.COMMUNITIES:
        return set(state.communities_of(u).tolist())
    if surface is Surface.PEOPLE:
        return set(state.friends_of(u).tolist()) | {u}
    return set(state.engaged.row(u).tolist())


def n_items(state: WorldState, surface: Surface) -> int:
    """The size of a surface's item space (dense indices ``0 .. n-1``)."""
    return {Surface.COMMUNITIES: state.n_communities, Surface.PEOPLE: state.n_users,
            Surface.CONTENT: state.n_content}[surface]


class _OnWorlds:
    """The ``state`` fixture: each test runs on every world of :data:`WORLDS` (built once per class)."""

    @pytest.fixture(scope="class", params=WORLDS)
    @classmethod
    def state(cls, request: pytest.FixtureRequest) -> WorldState:
        return world_state(request.param)


# ------------------------------------------------------------------------------------------------ sources


class SourceContract(_OnWorlds):
    """Deterministic per seed, never the user or what they already have, at most ``config.k`` distinct items with a
    finite score and a reason, unknown ids fail with a clear error, brand-new users are served, and a source restored
    from its :meth:`~belong.pipeline.components.Component.fitted` state answers the same.

    Subclass it as ``Test...`` and supply the fixture ``source``: a fresh, unprepared
    :class:`~belong.pipeline.components.CandidateSource` with a small ``config.k`` (e.g. 4). The contract prepares
    it on each world and asks for a sample of users on every surface (a source may return nothing on a surface).
    """

    @pytest.fixture
    def prepared(self, source: CandidateSource, state: WorldState) -> CandidateSource:
        source.prepare(state)
        return source

    @pytest.mark.parametrize("surface", SURFACES, ids=[s.value for s in SURFACES])
    def test_source_contract(self, prepared: CandidateSource, state: WorldState, surface: Surface) -> None:
        src, k = prepared, prepared.config.k
        for uid in sample_users(state):
            a = src.generate(Request(uid, surface, k=k, seed=3), state)
            b = src.generate(Request(uid, surface, k=k, seed=3), state)
            assert [(c.item, c.score, c.reason) for c in a] == [(c.item, c.score, c.reason) for c in b]  # deterministic
            assert len(a) <= k  # respects k
            assert len({c.item for c in a}) == len(a)  # no duplicates
            have = owned(state, surface, uid)
            for c in a:
                assert c.item not in have, f"{src.name} returned {c.item} that {uid} already has (or is)"
                assert 0 <= c.item < n_items(state, surface)
                assert c.source == src.name and c.reason.text and math.isfinite(c.score)
        with pytest.raises(UnknownIdError, match="unknown user id"):
            src.generate(Request("no-such-user", surface, k=k), state)
        fresh = src.generate(Request("brand-new", surface, k=k, new_user=NEW_USER), state)
        assert len(fresh) <= k and all(c.reason.text for c in fresh)

    @pytest.mark.parametrize("surface", SURFACES, ids=[s.value for s in SURFACES])
    def test_proposes_as_arrays_what_it_generates(self, prepared: CandidateSource, state: WorldState,
                                                  surface: Surface) -> None:
        """:meth:`~belong.pipeline.components.CandidateSource.propose_batch` (what batched evaluation reads) gives,
        for a whole batch, each request's own candidates: the same items in the merge's order, the same scores."""
        src, k = prepared, prepared.config.k
        reqs = [Request(uid, surface, k=k, seed=3, explain=False) for uid in sample_users(state)]
        reqs.append(Request("brand-new", surface, k=k, new_user=NEW_USER, explain=False))
        got = src.propose_batch(reqs, state)
        assert len(got) == len(reqs)
        for req, props in zip(reqs, got, strict=True):
            want = Proposals.of(src.generate(req, state), k)
            assert props.items.tolist() == want.items.tolist(), (src.name, req.user_id)
            assert props.scores.tolist() == want.scores.tolist(), (src.name, req.user_id)

    def test_restores_from_its_fitted_state(self, prepared: CandidateSource, state: WorldState) -> None:
        """Model artifacts save a source's :meth:`fitted` state as data (arrays, sparse matrices, ANN indexes, JSON);
        a fresh source restored from it (or prepared again, when it saves nothing) answers the same."""
        src = prepared
        fitted = src.fitted()
        again = type(src)(src.config)
        if fitted is None:
            again.prepare(state)
        else:
            for key, value in fitted.items():
                ok = (isinstance(value, AnnIndex) or sp.issparse(value)
                      or (isinstance(value, np.ndarray) and value.dtype != object))
                assert ok or orjson.loads(orjson.dumps(value)) == value, (src.name, key)
            again.restore(fitted, state)
        uid = sample_users(state)[0]
        for surface in SURFACES:
            req = Request(uid, surface, k=src.config.k)
            a = [(c.item, c.score) for c in src.generate(req, state)]
            assert a == [(c.item, c.score) for c in again.generate(req, state)], (src.name, surface.value)


# ------------------------------------------------------------------------------------------------ filters


class FilterContract(_OnWorlds):
    """Deterministic, a partition of its input into kept (in the input's order) and removed (each with a reason a
    person understands), unknown ids fail.

    Subclass it as ``Test...`` and supply the fixture ``filter_``: a fresh, unprepared
    :class:`~belong.pipeline.components.Filter`. It is given every item of each surface, for a sample of users.
    """

    @pytest.mark.parametrize("surface", SURFACES, ids=[s.value for s in SURFACES])
    def test_filter_contract(self, filter_: Filter, state: WorldState, surface: Surface) -> None:
        flt = filter_
        flt.prepare(state)
        everything = [Merged(i) for i in range(n_items(state, surface))]
        for uid in sample_users(state):
            req = Request(uid, surface)
            res = flt.apply(req, state, everything)
            again = flt.apply(req, state, everything)
            assert [m.item for m in res.kept] == [m.item for m in again.kept]  # deterministic
            kept, removed = [m.item for m in res.kept], [m.item for m, _ in res.removed]
            assert sorted(kept + removed) == list(range(len(everything)))  # a partition of the input
            assert kept == sorted(kept)  # order preserved
            assert all(isinstance(r, str) and r for _, r in res.removed)
        with pytest.raises(UnknownIdError):
            flt.apply(Request("no-such-user", surface), state, everything)

    @pytest.mark.parametrize("surface", SURFACES, ids=[s.value for s in SURFACES])
    def test_keep_mask_is_what_apply_keeps(self, filter_: Filter, state: WorldState, surface: Surface) -> None:
        """:meth:`~belong.pipeline.components.Filter.keep_mask` (batched evaluation's form: no candidate objects)
        keeps exactly the items :meth:`apply` keeps."""
        flt = filter_
        flt.prepare(state)
        items = np.arange(n_items(state, surface), dtype=np.int64)
        for uid in sample_users(state):
            req = Request(uid, surface)
            kept = {m.item for m in flt.apply(req, state, [Merged(i) for i in items.tolist()]).kept}
            mask = flt.keep_mask(req, state, items)
            assert mask.dtype == bool and mask.shape == items.shape
            assert items[mask].tolist() == sorted(kept), (flt.name, uid)


# ------------------------------------------------------------------------------------------------ scorers


def _hits(cands: list[Merged]) -> list[tuple[int, dict[str, Any]]]:
    return [(m.item, dict(m.hits)) for m in cands]


class ScorerContract:
    """One finite float per candidate, deterministic, nothing for nothing, the candidates left as they were, the same
    scores without explanations, and a fitted pipeline that answers.

    Subclass it as ``Test...`` and supply the fixture ``scorer``: a fresh, unfitted
    :class:`~belong.pipeline.components.Scorer`, **class-scoped** (``@pytest.fixture(scope="class")`` over a
    ``@classmethod``), as it is fitted once: in a :class:`~belong.pipeline.Pipeline` of the catalogue surface
    :attr:`surface_name` with the surface's scorer replaced by it, on the simulated world (a learning scorer gets its
    ``upstream`` there; one that calls it must be registered: ``upstream()`` rebuilds the pipeline's declaration).
    """

    #: the catalogue surface whose sources, hydrators, filters and selector surround the scorer
    surface_name: ClassVar[str] = "communities"

    @pytest.fixture(scope="class")
    @classmethod
    def state(cls) -> WorldState:
        return world_state("simulated")

    @pytest.fixture(scope="class")
    @classmethod
    def pipeline(cls, scorer: Scorer, state: WorldState) -> Pipeline:
        base = surfaces.load(cls.surface_name)
        return Pipeline(base.surface, base.sources, base.filters, scorer, base.selector, base.hydrators).fit(state)

    @pytest.fixture(scope="class")
    @classmethod
    def sample_requests(cls, pipeline: Pipeline, state: WorldState) -> list[Request]:
        """Requests of a sample of users, and of a brand-new user."""
        users = [Request(uid, pipeline.surface, k=10) for uid in sample_users(state, 8)]
        return [*users, Request("brand-new", pipeline.surface, k=10, new_user=NEW_USER)]

    @staticmethod
    def unscored(pipeline: Pipeline, request: Request) -> list[Merged]:
        """The request's merged, hydrated, filtered candidates (fresh objects on every call)."""
        return [m for m, _ in pipeline.candidates(request, score=False).ranked]

    def test_one_finite_float_per_candidate(
        self, pipeline: Pipeline, state: WorldState, sample_requests: list[Request]
    ) -> None:
        scored = 0
        for req in sample_requests:
            cands = self.unscored(pipeline, req)
            scores = pipeline.scorer.score(req, state, cands)
            assert isinstance(scores, np.ndarray) and scores.shape == (len(cands),), req.user_id
            assert np.issubdtype(scores.dtype, np.floating) and np.all(np.isfinite(scores)), req.user_id
            scored += len(cands)
        assert scored > 0, "no request had candidates: nothing was scored"

    def test_deterministic(self, pipeline: Pipeline, state: WorldState, sample_requests: list[Request]) -> None:
        for req in sample_requests:
            cands = self.unscored(pipeline, req)
            first = pipeline.scorer.score(req, state, cands)
            np.testing.assert_array_equal(first, pipeline.scorer.score(req, state, cands))  # the same objects again
            np.testing.assert_array_equal(first, pipeline.scorer.score(req, state, self.unscored(pipeline, req)))

    def test_empty_input_gives_an_empty_array(
        self, pipeline: Pipeline, state: WorldState, sample_requests: list[Request]
    ) -> None:
        for req in sample_requests[:2]:
            scores = pipeline.scorer.score(req, state, [])
            assert isinstance(scores, np.ndarray) and scores.shape == (0,)

    def test_candidates_are_left_as_they_were(
        self, pipeline: Pipeline, state: WorldState, sample_requests: list[Request]
    ) -> None:
        """Items, their order and their sources' hits are the scorer's input, not its output (features may be
        added, e.g. a calibrated probability for the explanation)."""
        for req in sample_requests:
            cands = self.unscored(pipeline, req)
            before = _hits(cands)
            pipeline.scorer.score(req, state, cands)
            assert _hits(cands) == before, req.user_id

    def test_same_scores_without_explanations(
        self, pipeline: Pipeline, state: WorldState, sample_requests: list[Request]
    ) -> None:
        for req in sample_requests:
            quiet = Request(req.user_id, req.surface, k=req.k, new_user=req.new_user, explain=False)
            scores = pipeline.scorer.score(quiet, state, self.unscored(pipeline, quiet))
            assert np.all(np.isfinite(scores))
            np.testing.assert_allclose(scores, pipeline.scorer.score(req, state, self.unscored(pipeline, req)),
                                       rtol=1e-6, atol=1e-9)

    def test_fitted_pipeline_answers(self, pipeline: Pipeline, sample_requests: list[Request]) -> None:
        for req in sample_requests:
            items = pipeline.run(req).items
            assert len(items) <= req.k and all(math.isfinite(i.score) for i in items)
            assert len({i.index for i in items}) == len(items)


# ------------------------------------------------------------------------------------------------ selectors

#: the ``k`` of the selector contract's requests, in turn
SELECT_K = (1, 5, 20)
Scored = tuple[Request, list[Merged], np.ndarray]


def _snapshot(cands: list[Merged]) -> list[tuple[int, dict[str, Any], dict[str, float]]]:
    return [(m.item, dict(m.hits), dict(m.features)) for m in cands]


class SelectorContract(_OnWorlds):
    """At most ``k`` of the given candidates, each once, with its input score; best first when it declares
    ``best_first``; the same answer twice when it declares ``deterministic``; the candidates untouched when it
    declares ``mutates = False``; nothing for nothing.

    Subclass it as ``Test...`` and supply the fixture ``selector``: a fresh, unprepared
    :class:`~belong.pipeline.components.Selector`. It is prepared on each world and given the scored candidate lists
    of the catalogue surfaces (fitted on that world) for a sample of users, with ``k`` of :data:`SELECT_K` in turn,
    and one list whose scores all tie.
    """

    @pytest.fixture(scope="class")
    @classmethod
    def scored_lists(cls, state: WorldState) -> list[Scored]:
        out: list[Scored] = []
        for surface in SURFACES:
            p = surfaces.load(surface.value).fit(state)
            for i, uid in enumerate(sample_users(state, 4)):
                req = Request(uid, surface, k=SELECT_K[i % len(SELECT_K)], seed=i)
                ranked = p.candidates(req).ranked
                out.append((req, [m for m, _ in ranked], np.array([s for _, s in ranked], np.float64)))
        req, cands, scores = max(out, key=lambda t: len(t[1]))
        out.append((Request(req.user_id, req.surface, k=5), cands, np.ones_like(scores)))  # every score tied
        return out

    @pytest.fixture
    def prepared(self, selector: Selector, state: WorldState) -> Selector:
        selector.prepare(state)
        return selector

    @staticmethod
    def inputs(scored_lists: list[Scored]) -> list[Scored]:
        """Private copies of the lists (a selector may write to the candidates it is given)."""
        return [(req, copy.deepcopy(cands), scores.copy()) for req, cands, scores in scored_lists]

    def test_at_most_k_given_candidates_once_each_with_their_score(self, prepared: Selector,
                                                                   scored_lists: list[Scored]) -> None:
        assert any(len(cands) for _, cands, _ in scored_lists), "no candidates to select from"
        for req, cands, scores in self.inputs(scored_lists):
            out = prepared.select(req, cands, scores)
            assert len(out) <= req.k
            score_of = {m.item: float(s) for m, s in zip(cands, scores.tolist(), strict=True)}
            items = [m.item for m, _ in out]
            assert all(isinstance(m, Merged) for m, _ in out)
            assert set(items) <= set(score_of), "returned an item it was not given"
            assert len(set(items)) == len(items), "returned an item twice"
            for m, s in out:
                assert isinstance(s, float) and s == score_of[m.item], (m.item, s, score_of[m.item])

    def test_best_first_when_declared(self, prepared: Selector, scored_lists: list[Scored]) -> None:
        if not prepared.best_first:
            pytest.skip(f"{type(prepared).__name__} does not declare best_first (it may reorder, e.g. to diversify)")
        for req, cands, scores in self.inputs(scored_lists):
            got = [s for _, s in prepared.select(req, cands, scores)]
            assert got == sorted(got, reverse=True)

    def test_same_answer_twice_when_deterministic(
        self, prepared: Selector, scored_lists: list[Scored]
    ) -> None:
        if not prepared.deterministic:
            pytest.skip(f"{type(prepared).__name__} does not declare deterministic")
        for (req, a_cands, a_scores), (_, b_cands, b_scores) in zip(self.inputs(scored_lists),
                                                                    self.inputs(scored_lists), strict=True):
            a = [(m.item, s) for m, s in prepared.select(req, a_cands, a_scores)]
            assert a == [(m.item, s) for m, s in prepared.select(req, b_cands, b_scores)]

    def test_candidates_untouched_unless_it_mutates(
        self, prepared: Selector, scored_lists: list[Scored]
    ) -> None:
        if prepared.mutates:
            pytest.skip(f"{type(prepared).__name__} declares mutates (the pipeline hands it copies)")
        for req, cands, scores in self.inputs(scored_lists):
            before, given = _snapshot(cands), scores.copy()
            prepared.select(req, cands, scores)
            assert _snapshot(cands) == before and np.array_equal(scores, given)

    def test_empty_input_gives_an_empty_list(self, prepared: Selector, scored_lists: list[Scored]) -> None:
        for req, _, _ in scored_lists[:3]:
            assert prepared.select(req, [], np.empty(0, np.float64)) == []
