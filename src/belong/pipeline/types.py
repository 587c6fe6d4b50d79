"""The values that flow through a pipeline: request, candidates, filter results, ranked lists, the memo of a
cached list, response and trace."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec
import numpy as np

from belong.domain import AgeGroup, Surface
from belong.errors import ValidationError

MAX_K = 1000


class NewUser(msgspec.Struct, frozen=True, kw_only=True):
    """What a brand-new user (no id in the state yet) tells us at sign-up: enough for a cold-start list."""

    locale: str = "und"
    age_group: AgeGroup = AgeGroup.UNKNOWN
    interests: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Request:
    """One recommendation request.

    ``new_user`` makes an id the state has never seen a brand-new user (cold start from locale, age group and
    interests) instead of an :class:`~belong.errors.UnknownIdError`. ``explain=False`` skips the costlier
    reason texts (batch evaluation). ``seed`` makes randomised sources (walks) reproducible.
    """

    user_id: str
    surface: Surface = Surface.COMMUNITIES
    k: int = 20
    new_user: NewUser | None = None
    context: dict[str, Any] = field(default_factory=dict)
    explain: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise ValidationError("k", f"must be an integer between 1 and {MAX_K}, got {self.k!r}")
        if not isinstance(self.user_id, str) or not self.user_id.strip():
            raise ValidationError("user", "must be a non-empty id")


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a source found an item: a sentence for people and the facts behind it for machines."""

    text: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One item (dense index in the surface's item space) proposed by one source."""

    item: int
    source: str
    score: float
    reason: Reason


@dataclass(frozen=True, slots=True)
class Proposals:
    """One source's candidates for one request as arrays (offline batches, no per-candidate objects): item indices
    best first (ties by item), their scores, and the source's second signal per item (``aux``: what a candidate's
    reason data would carry under ``"aux"``; None when the source gives none)."""

    items: np.ndarray  # int64
    scores: np.ndarray  # float64
    aux: np.ndarray | None = None  # float64, NaN where absent

    @staticmethod
    def empty() -> Proposals:
        return Proposals(np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def of(cls, cands: list[Candidate], k: int | None = None) -> Proposals:
        """From candidate objects, ordered as the merge orders them (best score first, ties by item), the best
        ``k``."""
        items = np.fromiter((c.item for c in cands), np.int64, len(cands))
        scores = np.fromiter((c.score for c in cands), np.float64, len(cands))
        aux_v = [c.reason.data.get("aux") for c in cands]
        aux = (np.array([np.nan if a is None else a for a in aux_v], np.float64)
               if any(a is not None for a in aux_v) else None)
        return cls(items, scores, aux).best(k)

    def best(self, k: int | None) -> Proposals:
        """Sorted best first (ties by item), at most ``k`` (None: all): what the merge keeps of a source."""
        order = np.lexsort((self.items, -self.scores))
        if k is not None:
            order = order[:k]
        if order.size == self.items.size and np.array_equal(order, np.arange(order.size)):
            return self
        return Proposals(self.items[order], self.scores[order], None if self.aux is None else self.aux[order])


@dataclass(slots=True)
class MergedArrays:
    """One request's merged candidates as arrays (offline batches): items in merge order and, per source (columns
    in the pipeline's source order), the rank the source gave the item (-1: not proposed), its score and ``aux``
    (NaN: not proposed / none), plus features the hydrators computed (one array per name)."""

    items: np.ndarray  # (n,) int64
    ranks: np.ndarray  # (n, S) int64
    scores: np.ndarray  # (n, S) float64
    aux: np.ndarray  # (n, S) float64
    sources: list[str]
    features: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.items.size)

    def take(self, keep: np.ndarray) -> MergedArrays:
        """The rows ``keep`` (a boolean mask or indices)."""
        return MergedArrays(self.items[keep], self.ranks[keep], self.scores[keep], self.aux[keep], self.sources,
                            {k: v[keep] for k, v in self.features.items()})


class PackedHits(Mapping[str, tuple[int, Candidate]]):
    """A candidate's hits (``{source: (rank, Candidate)}``, as :attr:`Merged.hits`) read from a packed row's
    ``((source, rank, score, ...), ...)``: each source's candidate is made when it is asked for, with ``reason``.
    One object per candidate instead of a dict and, per source, a tuple and a candidate: a serving cache keeps the
    candidates of the lists it answered (their rules' and selection's answers) for as long as it holds the list, and
    every object it keeps adds to each full pass of the garbage collector (docs/SCALING.md). Read-only."""

    __slots__ = ("_item", "_rows", "_reason")

    def __init__(self, item: int, rows: tuple, reason: Reason) -> None:  # noqa: D107 - see the class
        self._item, self._rows, self._reason = item, rows, reason

    def __getitem__(self, source: str) -> tuple[int, Candidate]:
        for row in self._rows:
            if row[0] == source:
                return row[1], Candidate(self._item, source, row[2], self._reason)
        raise KeyError(source)

    def __contains__(self, source: object) -> bool:
        return any(row[0] == source for row in self._rows)

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return repr(dict(self))


@dataclass(slots=True)
class Merged:
    """An item after merging every source that proposed it: per source, its rank (0 = best) and candidate."""

    item: int
    hits: dict[str, tuple[int, Candidate]] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return list(self.hits)


class PackedMerged(Merged):
    """A :class:`Merged` read from a packed row: its :attr:`hits` are a :class:`PackedHits` over the row's
    ``((source, rank, score, ...), ...)``, made when asked for. One object per candidate where a :class:`Merged`
    with a :class:`PackedHits` is two (see :class:`PackedHits` for why that counts). Equal to a :class:`Merged`
    with the same item, hits and features. Its hits are read-only."""

    __slots__ = ("_rows", "_reason")

    def __init__(self, item: int, rows: tuple, features: dict[str, float], reason: Reason) -> None:  # noqa: D107
        self.item, self.features, self._rows, self._reason = item, features, rows, reason

    @property  # a field of Merged, read-only here
    def hits(self) -> PackedHits:  # type: ignore[override]
        return PackedHits(self.item, self._rows, self._reason)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Merged):
            return NotImplemented
        return (self.item, self.hits, self.features) == (other.item, other.hits, other.features)

    __hash__ = None  # type: ignore[assignment]  # as Merged's: mutable, compared by value

    def __reduce__(self) -> tuple:
        """Copies (``copy``, ``deepcopy``) are made through the constructor: ``hits`` cannot be set."""
        return PackedMerged, (self.item, self._rows, self.features, self._reason)


@dataclass(frozen=True, slots=True)
class Removed:
    item: int
    filter: str
    reason: str


@dataclass(frozen=True, slots=True)
class FilterResult:
    kept: list[Merged]
    removed: list[tuple[Merged, str]]


class Ranked(Protocol):
    """A ranked ``(Merged, score)`` list, best first, as :meth:`~belong.pipeline.pipeline.Pipeline.finish` reads it:
    a :class:`RankedList`, or the serving cache's packed form (:class:`belong.serve.cache.Packed`)."""

    def __len__(self) -> int: ...

    def light(self, start: int, stop: int) -> list[tuple[Merged, float]]:
        """Rows ``start:stop``: what rules, selection and hydration read (the candidates' reasons may be left
        out; :meth:`full` has them). A list whose objects are shared says so with :attr:`shared`."""
        ...

    def full(self, item: int) -> Merged | None:
        """The candidate ``item`` with its sources' reasons (None when it is not in the list)."""
        ...

    def head(self, n: int) -> list[int]:
        """The first ``n`` items."""
        ...

    def reasons(self, item: int) -> dict[str, tuple[int, str]] | None:
        """Each source's rank and reason text for ``item`` (None when it is not in the list): what an explanation
        reads, without the candidate objects :meth:`full` builds."""
        ...

    def explained(self, item: int) -> tuple[tuple[str, ...], tuple[str, ...], str] | None:
        """The explanation of ``item`` made when the list was stored, as a memo keeps it (sources strongest first,
        their reasons as a flat ``(source, text, ...)`` tuple, the sentence shown), or None (to be made now)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether :meth:`light` hands out objects other requests hold too (then they are copied before any write)."""
        ...


class RankedList(list[tuple[Merged, float]]):
    """A plain ranked list (:class:`Ranked`): what :meth:`~belong.pipeline.pipeline.Pipeline.candidates` returns.
    ``shared``: its objects are held by others (a model's popular fallback), so they are never written to."""

    def __init__(self, rows: Any = (), *, shared: bool = False) -> None:
        super().__init__(rows)
        self._shared = shared
        self._by_item: dict[int, Merged] | None = None

    @property
    def shared(self) -> bool:
        return self._shared

    def light(self, start: int, stop: int) -> list[tuple[Merged, float]]:
        return self[start:stop]

    def full(self, item: int) -> Merged | None:
        if self._by_item is None:
            self._by_item = {m.item: m for m, _ in self}
        return self._by_item.get(item)

    def head(self, n: int) -> list[int]:
        return [m.item for m, _ in self[:n]]

    def reasons(self, item: int) -> dict[str, tuple[int, str]] | None:
        m = self.full(item)
        return None if m is None else {s: (r, c.reason.text) for s, (r, c) in m.hits.items()}

    def explained(self, item: int) -> None:
        return None


@dataclass(slots=True)
class Candidates:
    """The candidate half of a request (:meth:`~belong.pipeline.pipeline.Pipeline.candidates`): the scored list,
    best first, with what happened on the way — per-source time and counts, and every filter's removals."""

    ranked: RankedList
    #: the state version the list was made at: :meth:`~belong.pipeline.pipeline.Pipeline.finish` re-runs the rules
    #: only when the state has changed since
    state_version: int
    removed: list[Removed] = field(default_factory=list)
    source_ms: dict[str, float] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    stage_ms: dict[str, float] = field(default_factory=dict)
    n_candidates: int = 0


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why an item is recommended: its sources, strongest first, each one's reason, and the sentence shown."""

    sources: tuple[str, ...]
    reasons: dict[str, str]
    text: str


@dataclass(frozen=True, slots=True)
class Item:
    """One returned recommendation."""

    id: str
    index: int
    score: float
    rank: int
    sources: tuple[str, ...]
    explanation: str
    reasons: dict[str, str]
    name: str = ""
    #: the hydrated features (the candidate's own dict: exact for this answer)
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "id": self.id, "name": self.name, "score": round(self.score, 6),
            "sources": list(self.sources), "explanation": self.explanation, "reasons": self.reasons,
            "features": self.features,
        }


@dataclass(slots=True)
class ListMemo:
    """The answers of :meth:`~belong.pipeline.pipeline.Pipeline.finish`'s stages on one cached ranked list, reused
    while everything they read is unchanged — exact, not a time to live.

    * rules: while the filters' :meth:`~belong.pipeline.components.Filter.revision` (and ``k``, the new-user facts)
      are equal;
    * selection: with the rules' answer, for a deterministic selector that does not write to candidates;
    * hydration: while the hydrators' :meth:`~belong.pipeline.components.Hydrator.revision` of the chosen are equal
      (the chosen objects are hydrated in place);
    * items: the explained items of those chosen at that hydration;
    * explained: each item's :class:`Explanation` (a function of the list alone) as flat tuples of strings
      ``(sources, (source, reason, source, reason, ...), text)``, which the garbage collector stops tracking at its
      first pass, where an ``Explanation`` object is walked by each of its full passes while the list is cached.
    """

    ranked: Any = None  # the list the fields below were computed on (compared by identity)
    rules_key: Hashable | None = None
    kept: list[Merged] | None = None
    kept_scores: list[float] | None = None
    chosen: list[tuple[Merged, float]] | None = None
    chosen_items: list[Merged] | None = None  # the chosen candidates alone (what the hydrators read)
    hydration: Hashable | None = None
    items: list[Item] | None = None
    explained: dict[int, tuple[tuple[str, ...], tuple[str, ...], str]] = field(default_factory=dict)

    def reset(self, ranked: Any) -> None:
        """Forget every answer computed on another list (the explanations of items stay: they follow the item)."""
        self.ranked = ranked
        self.set_rules(None, None, None)

    def set_rules(self, key: Hashable | None, kept: list[Merged] | None, scores: list[float] | None) -> None:
        """A new rules answer; every later stage's answer is forgotten."""
        self.rules_key, self.kept, self.kept_scores = key, kept, scores
        self.set_chosen(None)

    def set_chosen(self, chosen: list[tuple[Merged, float]] | None) -> None:
        """A new selection; the hydration and items of the last one are forgotten."""
        self.chosen, self.hydration, self.items = chosen, None, None
        self.chosen_items = None if chosen is None else [m for m, _ in chosen]


@dataclass(slots=True)
class Finished:
    """The finishing half of a request (:meth:`~belong.pipeline.pipeline.Pipeline.finish`)."""

    chosen: list[tuple[Merged, float]]
    items: list[Item]
    #: what the live rules removed on this call (empty when they did not run or their answer was reused)
    removed: list[Removed]
    #: the hydrators' revisions the chosen were hydrated at (None: no such key)
    hydration: Hashable | None
    stage_ms: dict[str, float]


@dataclass(slots=True)
class Trace:
    """What happened: milliseconds per stage and per source, candidate counts, and every filter's removals."""

    stage_ms: dict[str, float] = field(default_factory=dict)
    source_ms: dict[str, float] = field(default_factory=dict)
    source_counts: dict[str, int] = field(default_factory=dict)
    removed: list[Removed] = field(default_factory=list)
    n_candidates: int = 0

    def to_dict(self, item_id: Any = None) -> dict[str, Any]:
        def ident(i: int) -> Any:
            return item_id(i) if item_id else i

        return {
            "stage_ms": {k: round(v, 3) for k, v in self.stage_ms.items()},
            "source_ms": {k: round(v, 3) for k, v in self.source_ms.items()},
            "source_counts": dict(self.source_counts),
            "candidates": self.n_candidates,
            "removed": [{"id": ident(r.item), "filter": r.filter, "reason": r.reason} for r in self.removed],
        }


@dataclass(slots=True)
class Response:
    surface: str
    user_id: str
    items: list[Item]
    trace: Trace


@dataclass(frozen=True, slots=True)
class WhyNot:
    """Why an item is or is not in a user's answer (:meth:`~belong.pipeline.pipeline.Pipeline.why_not`).

    ``verdict``: ``shown`` (at ``rank``), ``not_a_candidate`` (no source proposed it), ``removed`` (by ``filter``,
    for ``reason``), ``below_cut`` (ranked ``position`` of the candidates, after the ``k`` shown; ``score`` against
    the last shown ``cut_score``) or ``not_selected`` (ranked high enough, left out by the selector)."""

    item: str
    verdict: str
    text: str
    sources: dict[str, int] = field(default_factory=dict)  # source -> its rank of the item (0 = its best)
    filter: str | None = None
    reason: str | None = None
    position: int | None = None  # 1-based, among the ranked candidates
    rank: int | None = None  # 1-based, in the answer
    score: float | None = None
    cut_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}
