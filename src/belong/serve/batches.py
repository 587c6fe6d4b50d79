"""The write routes' bodies as events: ``POST /v1/events`` rows and ``POST /v1/impressions`` items, validated whole
(the first bad row answers 422 naming ``events[i].<field>`` or the impression's field). A batch that says two
different things under one event id is refused (naming the second row), never stored in part or dropped in
silence; the same event twice is an idempotent re-send. These are the parsers the fuzz tests drive
(``tests/fuzz``): any input gives events or a :class:`~belong.errors.ValidationError`, nothing else."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

from belong.domain import Event, Surface, parse_enum, parse_event, parse_ts
from belong.errors import ValidationError
from belong.serve.schemas import ImpressionBatch, ImpressionLists

MAX_IMPRESSION_ITEMS = 10_000  #: items in all in one ``POST /v1/impressions/batch``

_TARGET_KIND = {Surface.COMMUNITIES: "community", Surface.PEOPLE: "user", Surface.CONTENT: "content"}
#: event fields of an impression that come from the batch, not from one item
_IMPRESSION_FIELDS = {"actor": "user_id", "request_id": "request_id", "ts": "ts", "target": "item_id"}


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


def event_batch(rows: Sequence[Any]) -> list[Event]:
    """The events of a ``POST /v1/events`` body's ``events`` list."""
    events = []
    for i, row in enumerate(rows):
        try:
            events.append(parse_event(row))
        except ValidationError as exc:
            raise ValidationError(f"events[{i}].{exc.field}", exc.reason) from None
    refuse_conflicts(events, "events")
    return events


def impression_events(batch: ImpressionBatch) -> list[Event]:
    """One impression event per shown item; its id is a digest of (user, request, position, item), so a re-send
    is a duplicate and another user's impression of the same slot is not."""
    surface = parse_enum(batch.surface, Surface, "surface")
    ts_us = time.time_ns() // 1000 if batch.ts in (None, "") else parse_ts(batch.ts, "ts")
    events = []
    for i, it in enumerate(batch.items):
        key = f"{batch.user_id}\x00{batch.request_id}\x00{it.position}\x00{it.item_id}"  # whose impression, too
        digest = hashlib.sha256(key.encode()).hexdigest()
        row = {"event_id": f"imp-{digest[:32]}", "ts": ts_us / 1e6, "type": "impression",
               "actor": batch.user_id, "target": it.item_id, "target_kind": _TARGET_KIND[surface],
               "request_id": batch.request_id, "surface": surface.value, "position": it.position,
               "propensity": it.propensity}
        try:
            events.append(parse_event(row))
        except ValidationError as exc:
            raise ValidationError(_IMPRESSION_FIELDS.get(exc.field, f"items[{i}].{exc.field}"), exc.reason) from None
    refuse_conflicts(events, "items", "")  # the same slot twice with different propensities
    return events


def impression_lists(body: ImpressionLists) -> list[Event]:
    """The impression events of a ``POST /v1/impressions/batch`` body: every list as :func:`impression_events`
    makes it (a bad one names ``lists[i].<field>``), all or none."""
    total = sum(len(b.items) for b in body.lists)
    if total > MAX_IMPRESSION_ITEMS:
        raise ValidationError("lists", f"{total} items in all: at most {MAX_IMPRESSION_ITEMS} a call")
    events: list[Event] = []
    first: dict[str, tuple[int, Event]] = {}
    for i, batch in enumerate(body.lists):
        try:
            made = impression_events(batch)
        except ValidationError as exc:
            raise ValidationError(f"lists[{i}].{exc.field}", exc.reason) from None
        for e in made:  # one slot in two lists, said differently (another propensity or time): refused
            seen = first.setdefault(e.event_id, (i, e))
            if seen[1] != e:
                raise ValidationError(f"lists[{i}]", f"repeats a shown item of lists[{seen[0]}] (same user, request, "
                                      "position and item) with different content")
        events.extend(made)
    return events
