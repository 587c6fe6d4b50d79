"""Dataset loaders: real public datasets (and user-supplied files in the same formats) into the data model.

Every loader returns a :class:`World` — entity and event tables in the schemas of :mod:`belong.schema` — which
``belong load`` writes into a store and ``belong evaluate`` turns into :class:`belong.interactions.Interactions`.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from belong.datasets.world import World
from belong.errors import DatasetError
from belong.eventlog.base import AppendResult, EventStore

__all__ = ["EVENT_BATCH", "SPEC_HELP", "World", "load_world", "write_world"]


#: the dataset specs :func:`load_world` accepts.
SPEC_HELP = "hetrec-lastfm | ml-100k | lightgcn:DIR | edges:FILE.csv"
EVENT_BATCH = 100_000


def load_world(spec: str, data_dir: Path | None = None) -> World:
    """Load a dataset by spec: ``hetrec-lastfm``, ``ml-100k``, ``lightgcn:DIR`` or ``edges:FILE.csv``.

    Named datasets are read from ``data_dir`` (default: the ``BELONG_DATA_DIR`` setting); DIR/FILE resolve
    against the current directory first, then the data folder. Raises :class:`DatasetError` for an unknown spec,
    a missing or malformed file, or counts that differ from the folder's SOURCE.md.
    """
    kind, _, arg = spec.strip().partition(":")
    if kind == "hetrec-lastfm" and not arg:
        from belong.datasets.hetrec import load_hetrec_lastfm

        return load_hetrec_lastfm(data_dir)
    if kind == "ml-100k" and not arg:
        from belong.datasets.movielens import load_ml_100k

        return load_ml_100k(data_dir)
    if kind == "lightgcn":
        from belong.datasets.lightgcn import load_lightgcn

        return load_lightgcn(arg, data_dir)
    if kind == "edges":
        from belong.datasets.edges import load_edges

        return load_edges(arg, data_dir)
    raise DatasetError(f"dataset: unknown spec {spec!r}; expected {SPEC_HELP}")


def write_world(store: EventStore, world: World, progress: bool = True) -> dict[str, int]:
    """Write a World into a store: users, communities, content, then events in batches of ~100k.

    Returns the rows written per entity kind, the events sent and how many the store accepted as new or
    recognised as duplicates (re-loading the same world is idempotent: everything is a duplicate).
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = {
        "users": store.upsert_users(world.users) if world.users.num_rows else 0,
        "communities": store.upsert_communities(world.communities) if world.communities.num_rows else 0,
        "content": store.upsert_content(world.content) if world.content.num_rows else 0,
        "events": world.events.num_rows,
    }
    result = AppendResult(0, 0)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not progress) as bar:
        task = bar.add_task("writing events", total=world.events.num_rows)
        for batch in world.events.to_batches(max_chunksize=EVENT_BATCH):
            result = result + store.append(pa.Table.from_batches([batch]))
            bar.advance(task, batch.num_rows)
    out["accepted"] = result.accepted
    out["duplicates"] = result.duplicates
    return out
