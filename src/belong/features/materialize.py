"""Materialisation: fold the event log up to an as-of time and write every entity row to the online store.

The rows come from :class:`belong.features.state.FeatureState`, the same code that builds training rows, at
``as_of`` (events with ``ts_us < as_of`` count). Without an explicit time, ``as_of`` is one microsecond after the
last event of the log ("as of the end of the log"), which for a live log is now, and for a replayed or simulated
log is the time the log stops; an empty log uses the wall clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from belong.eventlog.base import EventStore
from belong.features.catalog import Catalog
from belong.features.online import OnlineFeatureStore
from belong.features.state import EventCursor, FeatureState

Progress = Callable[[str, int, int | None], None]
"""``progress(stage, n, total)``: ``("events", n_folded, None)`` per batch folded, then
``("<entity>", n_written, n_rows_of_that_entity)`` per chunk written."""


@dataclass(frozen=True, slots=True)
class MaterializeReport:
    as_of_us: int
    events: int
    users: int
    communities: int
    content: int
    fold_seconds: float
    write_seconds: float

    def to_dict(self) -> dict[str, object]:
        from belong.domain import us_to_iso

        return {**asdict(self), "as_of": us_to_iso(self.as_of_us)}


def default_as_of(store: EventStore) -> int:
    span = store.time_span()
    return span[1] + 1 if span else time.time_ns() // 1000


def fold(
    store: EventStore, as_of_us: int, *, batch_size: int = 100_000, progress: Progress | None = None
) -> FeatureState:
    """A state holding every event of ``store`` strictly before ``as_of_us``, with the store's catalogue."""
    state = FeatureState(Catalog.from_store(store))

    def batches() -> Iterator:
        for batch in store.iter_events(end_us=as_of_us, batch_size=batch_size):
            yield batch
            if progress is not None:  # resumed once the cursor has folded this batch
                progress("events", batch.num_rows, None)

    EventCursor(state, batches()).advance_to(as_of_us)
    return state


def materialize(
    store: EventStore,
    features: OnlineFeatureStore,
    as_of_us: int | None = None,
    *,
    batch_size: int = 100_000,
    write_chunk: int = 2000,
    progress: Progress | None = None,
) -> MaterializeReport:
    """Write the rows of every user, community and content item as of ``as_of_us`` to ``features``."""
    as_of = default_as_of(store) if as_of_us is None else as_of_us
    t0 = time.perf_counter()
    state = fold(store, as_of, batch_size=batch_size, progress=progress)
    t1 = time.perf_counter()
    counts = {}
    for entity, keys in (
        ("user", state.user_ids()),
        ("community", state.community_ids()),
        ("content", state.content_ids()),
    ):
        for lo in range(0, len(keys), write_chunk):
            chunk = keys[lo : lo + write_chunk]
            features.write(entity, {k: state.row(entity, k, as_of) for k in chunk}, as_of)
            if progress is not None:
                progress(entity, len(chunk), len(keys))
        counts[entity] = len(keys)
    return MaterializeReport(
        as_of_us=as_of,
        events=state.events_applied,
        users=counts["user"],
        communities=counts["community"],
        content=counts["content"],
        fold_seconds=round(t1 - t0, 3),
        write_seconds=round(time.perf_counter() - t1, 3),
    )
