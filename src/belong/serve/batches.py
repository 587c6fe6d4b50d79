"""A batch that says two different things under one event id is refused whole (422 naming the second row's
``event_id``), never stored in part or dropped in silence; the same event twice is an idempotent re-send."""

from __future__ import annotations

from belong.domain import Event
from belong.errors import ValidationError


def refuse_conflicts(events: list[Event], rows: str, suffix: str = ".event_id") -> None:
    """Raise :class:`ValidationError` at the first row whose ``event_id`` an earlier row of the batch holds with
    different content (``rows``: the batch's list field, ``events`` or ``items``; the field named is
    ``rows[i]`` + ``suffix``)."""
    first: dict[str, tuple[int, Event]] = {}
    for i, e in enumerate(events):
        seen = first.setdefault(e.event_id, (i, e))
        if seen[1] != e:
            raise ValidationError(f"{rows}[{i}]{suffix}",
                                  f"{e.event_id!r} is also {rows}[{seen[0]}] with different content: one event id "
                                  "names one event (send each event once, or give them distinct ids)")
