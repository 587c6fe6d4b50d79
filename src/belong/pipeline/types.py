"""The values that flow through a pipeline: request, candidates, filter results, response and trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

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


@dataclass(slots=True)
class Merged:
    """An item after merging every source that proposed it: per source, its rank (0 = best) and candidate."""

    item: int
    hits: dict[str, tuple[int, Candidate]] = field(default_factory=dict)
    features: dict[str, float] = field(default_factory=dict)

    @property
    def sources(self) -> list[str]:
        return list(self.hits)


@dataclass(frozen=True, slots=True)
class Removed:
    item: int
    filter: str
    reason: str


@dataclass(frozen=True, slots=True)
class FilterResult:
    kept: list[Merged]
    removed: list[tuple[Merged, str]]


@dataclass(frozen=True, slots=True)
class Item:
    """One returned recommendation."""

    id: str
    index: int
    score: float
    rank: int
    sources: list[str]
    explanation: str
    reasons: dict[str, str]
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank, "id": self.id, "score": round(self.score, 6), "sources": self.sources,
            "explanation": self.explanation, "reasons": self.reasons, "features": self.features,
        }


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
