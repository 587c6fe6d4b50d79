"""Component kinds of a pipeline and the registry that maps TOML ``type`` names to classes.

Every component has a stable ``name`` (its config's ``name``, defaulting to the registered type name; used in
logs, traces and explanations), a typed ``msgspec`` config that round-trips to TOML, one request-time method, and
an optional ``prepare(state)`` called once when the pipeline is fitted (train a model, build an index). A
component whose ``prepare`` is costly also says what it computed (:meth:`Component.fitted`) and takes it back
(:meth:`Component.restore`): that is what a model artifact (:mod:`belong.training.artifact`) saves, as data.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import msgspec
import numpy as np

from belong.errors import ValidationError
from belong.pipeline.types import Candidate, FilterResult, Merged, MergedArrays, Proposals, Request
from belong.registry import Registry
from belong.state import WorldState

if TYPE_CHECKING:
    from belong.pipeline.pipeline import Pipeline

#: ``(done, total)``: called as long work advances (training lists)
Progress = Callable[[int, int], None]
C = TypeVar("C", bound="Component")

KINDS = ("source", "hydrator", "filter", "scorer", "selector")
#: per kind, the component types surface TOML may name (``type = "..."``)
REGISTRY: dict[str, Registry[type[Component]]] = {k: Registry(k) for k in KINDS}


class ComponentConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base config: ``name`` overrides the component's stable name (to run two of one type)."""

    name: str = ""


class SourceConfig(ComponentConfig, kw_only=True, forbid_unknown_fields=True):
    weight: float = 1.0  # weight in the blend
    k: int = 200  # candidates kept from this source


class Component:
    kind: ClassVar[str] = ""
    type_name: ClassVar[str] = ""
    Config: ClassVar[type[ComponentConfig]] = ComponentConfig

    def __init__(self, config: ComponentConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()
        self.name = self.config.name or self.type_name

    def prepare(self, state: WorldState) -> None:
        """Called once per state before requests (train models, build indexes). Default: nothing."""

    def fitted(self) -> dict[str, Any] | None:
        """What :meth:`prepare` computed that is worth saving in a model artifact, as a flat dict of numpy
        arrays (no objects), scipy sparse matrices, :class:`~belong.ann.AnnIndex` and JSON values. None (the
        default): nothing costly, the artifact's loader prepares the component again on its state."""
        return None

    def restore(self, fitted: dict[str, Any], state: WorldState) -> None:
        """Put back what :meth:`fitted` returned (read from an artifact); cheap things may be derived from
        ``state`` again. Default: :meth:`prepare`."""
        self.prepare(state)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in msgspec.to_builtins(self.config).items() if not (k == "name" and not v)}
        return {"type": self.type_name, **data}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def register(kind: str, type_name: str) -> Callable[[type[C]], type[C]]:
    """Class decorator: make a component available to surface TOML as ``type = "<type_name>"``."""

    def deco(cls: type[C]) -> type[C]:
        cls.kind, cls.type_name = kind, type_name
        REGISTRY[kind].add(type_name, cls)
        return cls

    return deco


def build(kind: str, data: dict[str, Any], where: str) -> Component:
    """A component from its TOML table (``type`` plus config fields); errors name the table and field."""
    if not isinstance(data, dict):
        raise ValidationError(where, "must be a table")
    data = dict(data)
    type_name = data.pop("type", None)
    if type_name is None:
        raise ValidationError(f"{where}.type", "is required")
    cls = REGISTRY[kind].get(str(type_name), f"{where}.type")
    try:
        config = msgspec.convert(data, cls.Config)
    except msgspec.ValidationError as exc:
        raise ValidationError(where, str(exc)) from None
    return cls(config)


class CandidateSource(Component):
    """Proposes items for a request. Never returns the user, items they already have, or more than ``k``."""

    Config: ClassVar[type[ComponentConfig]] = SourceConfig
    config: SourceConfig

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        raise NotImplementedError

    def generate_batch(self, requests: list[Request], state: WorldState) -> list[list[Candidate]]:
        """:meth:`generate` of each request (offline batches: evaluation, training lists). A source overrides it
        with a vectorised version that gives the same candidates, same scores; the default asks one by one."""
        return [self.generate(r, state) for r in requests]

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate_batch` as arrays (offline batches that need no reasons: evaluation): each request's
        items best first (ties by item), at most ``k``, with their scores and ``aux`` — the same items and scores.
        A source overrides it to skip the candidate objects; the default converts :meth:`generate_batch`'s."""
        return [Proposals.of(c, self.config.k) for c in self.generate_batch(requests, state)]

    # helpers for subclasses
    def _top(self, scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the k best positive-scored entries of a dense vector, best first (ties by index)."""
        s = np.asarray(scores, dtype=np.float64).copy()
        if exclude is not None and exclude.size:
            s[exclude[exclude < s.size]] = -np.inf
        pos = np.flatnonzero(s > 0)
        if pos.size > k:
            part = np.argpartition(-s[pos], k - 1)[:k]
            pos = pos[part]
        order = np.lexsort((pos, -s[pos]))
        return pos[order], s[pos[order]]


    def _top_of(self, items: np.ndarray, scores: np.ndarray, k: int, exclude: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_top` of a sparse vector: ``scores`` of the distinct ``items`` (every other entry 0), the same
        answer without a dense vector the size of the catalogue."""
        s = np.asarray(scores, dtype=np.float64).copy()
        if exclude is not None and exclude.size:
            s[np.isin(items, exclude)] = -np.inf
        keep = np.flatnonzero(s > 0)
        pos, val = items[keep], s[keep]
        if pos.size > k:
            part = np.argpartition(-val, k - 1)[:k]
            pos, val = pos[part], val[part]
        order = np.lexsort((pos, -val))
        return pos[order], val[order]


class Hydrator(Component):
    """Adds features to merged candidates (``Merged.features``) for filters, scorers and explanations."""

    def hydrate(self, request: Request, state: WorldState, cands: list[Merged]) -> None:
        raise NotImplementedError

    def revision(self, request: Request, state: WorldState, cands: list[Merged]) -> Hashable | None:
        """What :meth:`hydrate` would read for ``cands``, as counters: equal revisions mean the features it wrote
        last time on these same objects are still exact (the serving engine then skips it). None (the default):
        no such key, always hydrate."""
        return None

    def hydrate_arrays(self, request: Request, state: WorldState, items: np.ndarray) -> dict[str, np.ndarray]:
        """What :meth:`hydrate` writes into each candidate's ``features``, as one array per feature over ``items``
        (offline batches). Default: :meth:`hydrate` on fresh candidates, read back."""
        cands = [Merged(i) for i in items.tolist()]
        self.hydrate(request, state, cands)
        names = dict.fromkeys(k for m in cands for k in m.features)
        return {k: np.array([m.features.get(k, np.nan) for m in cands], np.float64) for k in names}


class Filter(Component):
    """Splits candidates into kept and removed (with a reason a person understands)."""

    def apply(self, request: Request, state: WorldState, cands: list[Merged]) -> FilterResult:
        raise NotImplementedError

    def revision(self, request: Request, state: WorldState) -> Hashable | None:
        """What :meth:`apply` reads for ``request`` besides the candidates, as counters: equal revisions mean the
        same answer on the same candidates (the last one may then be reused). None (the default): no such key."""
        return None

    def mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray | None:
        """The rule of :meth:`apply` on arrays: which of ``items`` it keeps (True), where this filter has that
        form for the request's surface; None (the default): it has not."""
        return None

    def keep_mask(self, request: Request, state: WorldState, items: np.ndarray) -> np.ndarray:
        """Which of ``items`` :meth:`apply` keeps, as a boolean array (offline batches: no candidate objects, no
        reasons): :meth:`mask`, else :meth:`apply` on fresh candidates."""
        keep = self.mask(request, state, items)
        if keep is not None:
            return keep
        return _kept_mask(items, self.apply(request, state, [Merged(i) for i in items.tolist()]))


def _kept_mask(items: np.ndarray, res: FilterResult) -> np.ndarray:
    if not res.removed:
        return np.ones(items.size, bool)
    return np.isin(items, np.fromiter((m.item for m, _ in res.removed), np.int64, len(res.removed)),
                   invert=True)


class Scorer(Component):
    """One score per candidate (higher is better). ``source_weights`` is set by the pipeline from its sources."""

    source_weights: dict[str, float]

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Called by :meth:`Pipeline.fit <belong.pipeline.pipeline.Pipeline.fit>` once the sources, hydrators and
        filters are prepared. ``upstream()`` gives a fresh, unfitted copy of the pipeline's candidate stage, for a
        scorer that learns from candidates (fit it on a validation cut of ``state`` and read its
        :meth:`~belong.pipeline.pipeline.Pipeline.candidates`). Default: :meth:`prepare`."""
        self.prepare(state)

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        raise NotImplementedError

    def score_batch(self, requests: list[Request], state: WorldState, lists: list[list[Merged]]
                    ) -> list[np.ndarray]:
        """:meth:`score` of each request's list (offline batches); a learned scorer overrides it to predict one
        matrix for the whole batch, with the same scores."""
        return [self.score(r, state, c) for r, c in zip(requests, lists, strict=True)]

    #: whether the scores read the hydrators' features (False: an offline batch may skip hydration)
    reads_features: bool = True

    def inactive_sources(self) -> frozenset[str]:
        """Sources whose candidates this fitted scorer gives no weight at all (e.g. a gate dropped them): a scored
        pipeline run does not run them (their proposals are empty), so they cost nothing per request. The
        unscored candidate stage (training and validation lists) still runs every source. Default: none."""
        return frozenset()

    def score_arrays(self, requests: list[Request], state: WorldState, lists: list[MergedArrays]
                     ) -> list[np.ndarray] | None:
        """:meth:`score` of each request's merged candidates given as arrays (offline batches), the same scores;
        None (the default): not supported, the caller scores candidate objects with :meth:`score_batch`."""
        return None


class Selector(Component):
    """Picks the final ordered list of at most ``request.k`` from scored candidates."""

    #: whether :meth:`select` writes into the candidates it is given (e.g. an exploration propensity): a caller
    #: holding shared candidates then passes copies
    mutates: bool = True
    #: whether :meth:`select` is a function of ``request.k``, the candidates and their scores alone (no randomness,
    #: no clock): its answer may then be reused for the same list
    deterministic: bool = False
    #: whether :meth:`select` returns its choice best first by score (a plain top-k; not a diversifying re-ranker)
    best_first: bool = False

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        raise NotImplementedError

    def select_arrays(self, request: Request, items: np.ndarray, scores: np.ndarray) -> np.ndarray | None:
        """The positions :meth:`select` would choose among ``items`` (with ``scores``), in its order, when it is a
        function of items and scores alone (offline batches); None (the default): not supported."""
        return None
