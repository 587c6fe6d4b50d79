"""Columnar builders for the data model's Arrow tables, shared by the dataset loaders and the simulator.

Everything is vectorised: columns come in as numpy arrays / Arrow arrays (scalars broadcast) and the result is
checked with :func:`belong.schema.validate_event_table` / :func:`belong.schema.validate_entity_table`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.domain import EntityStatus
from belong.errors import DatasetError, ValidationError
from belong.schema import (
    COMMUNITY_SCHEMA,
    CONTENT_SCHEMA,
    EVENT_SCHEMA,
    USER_SCHEMA,
    validate_entity_table,
    validate_event_table,
)

ArrayLike: TypeAlias = np.ndarray | pa.Array | pa.ChunkedArray | list


def ts_us(year: int, month: int = 1, day: int = 1) -> int:
    """Microseconds since the epoch of a UTC midnight."""
    return int(datetime(year, month, day, tzinfo=UTC).timestamp()) * 1_000_000


def str_ids(values: ArrayLike, prefix: str = "") -> pa.Array:
    """Integers (or strings) as string ids, with an optional prefix: ``prefix + str(v)``."""
    arr = pa.array(values) if not isinstance(values, pa.Array | pa.ChunkedArray) else values
    if not pa.types.is_string(arr.type):
        arr = pc.cast(arr, pa.string())
    if prefix:
        arr = pc.binary_join_element_wise(prefix, arr, "")
    return arr


def seq_ids(prefix: str, n: int, start: int = 0) -> pa.Array:
    """``prefix0 … prefix{n-1}`` (offset by ``start``): deterministic event ids for the n rows of a table."""
    return str_ids(np.arange(start, start + n, dtype=np.int64), prefix)


def _col(value: object, n: int, type_: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value if value.type == type_ else pc.cast(value, type_)
    if isinstance(value, np.ndarray | list):
        return pa.array(value, type=type_)
    return pa.array([value] * n, type=type_) if n < 64 else pa.repeat(pa.scalar(value, type_), n)


def _validated(kind: str, table: pa.Table, dataset: str) -> pa.Table:
    try:
        if kind == "events":
            return validate_event_table(table)
        return validate_entity_table(kind, table)
    except ValidationError as exc:
        raise DatasetError(f"{dataset}: invalid {kind}: {exc}") from None


def event_table(
    dataset: str,
    *,
    event_id: ArrayLike,
    ts_us: ArrayLike | int,
    type: ArrayLike | str,
    actor: ArrayLike,
    target: ArrayLike,
    target_kind: ArrayLike | str,
    value: ArrayLike | float = 1.0,
) -> pa.Table:
    """An :data:`EVENT_SCHEMA` table (impression fields null), validated."""
    ids = _col(event_id, 0, pa.string())
    n = len(ids)
    cols = {
        "event_id": ids,
        "ts_us": _col(ts_us, n, pa.int64()),
        "type": _col(type, n, pa.string()),
        "actor": _col(actor, n, pa.string()),
        "target": _col(target, n, pa.string()),
        "target_kind": _col(target_kind, n, pa.string()),
        "value": _col(value, n, pa.float64()),
    }
    for f in EVENT_SCHEMA:
        if f.name not in cols:
            cols[f.name] = pa.nulls(n, f.type)
    return _validated("events", pa.table(cols, schema=EVENT_SCHEMA), dataset)


def user_table(
    dataset: str,
    *,
    id: ArrayLike,
    created_at_us: ArrayLike | int,
    age_group: ArrayLike | str = "unknown",
    locale: ArrayLike | str = "und",
    interests: pa.Array | None = None,
) -> pa.Table:
    ids = _col(id, 0, pa.string())
    n = len(ids)
    table = pa.table(
        {
            "id": ids,
            "created_at_us": _col(created_at_us, n, pa.int64()),
            "age_group": _col(age_group, n, pa.string()),
            "locale": _col(locale, n, pa.string()),
            "interests": interests if interests is not None else pa.nulls(n, pa.list_(pa.string())),
            "status": _col(EntityStatus.ACTIVE.value, n, pa.string()),
        },
        schema=USER_SCHEMA,
    )
    return _validated("users", table, dataset)


def community_table(
    dataset: str,
    *,
    id: ArrayLike,
    name: ArrayLike,
    created_at_us: ArrayLike | int,
    description: ArrayLike | str = "",
    tags: pa.Array | None = None,
    locale: ArrayLike | str = "und",
    is_age_restricted: ArrayLike | bool = False,
    discoverable: ArrayLike | bool = True,
    invite_only: ArrayLike | bool = False,
) -> pa.Table:
    ids = _col(id, 0, pa.string())
    n = len(ids)
    table = pa.table(
        {
            "id": ids,
            "name": _col(name, n, pa.string()),
            "created_at_us": _col(created_at_us, n, pa.int64()),
            "description": _col(description, n, pa.string()),
            "tags": tags if tags is not None else pa.nulls(n, pa.list_(pa.string())),
            "locale": _col(locale, n, pa.string()),
            "is_age_restricted": _col(is_age_restricted, n, pa.bool_()),
            "discoverable": _col(discoverable, n, pa.bool_()),
            "invite_only": _col(invite_only, n, pa.bool_()),
            "status": _col(EntityStatus.ACTIVE.value, n, pa.string()),
        },
        schema=COMMUNITY_SCHEMA,
    )
    return _validated("communities", table, dataset)


def content_table(
    dataset: str,
    *,
    id: ArrayLike,
    community_id: ArrayLike,
    kind: ArrayLike | str,
    created_at_us: ArrayLike | int,
    text: ArrayLike | str = "",
) -> pa.Table:
    ids = _col(id, 0, pa.string())
    n = len(ids)
    table = pa.table(
        {
            "id": ids,
            "community_id": _col(community_id, n, pa.string()),
            "kind": _col(kind, n, pa.string()),
            "created_at_us": _col(created_at_us, n, pa.int64()),
            "text": _col(text, n, pa.string()),
            "status": _col(EntityStatus.ACTIVE.value, n, pa.string()),
        },
        schema=CONTENT_SCHEMA,
    )
    return _validated("content", table, dataset)


def list_column(offsets: np.ndarray, values: ArrayLike) -> pa.ListArray:
    """A list<string> column from CSR-style ``offsets`` (len n+1) and flat ``values``."""
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), _col(values, 0, pa.string()))
