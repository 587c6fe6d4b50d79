"""Arrow schemas of the data model, and columnar conversion/validation.

Bulk producers (dataset loaders, the simulator) build Arrow tables directly; they are checked here with vectorised
rules equivalent to :func:`belong.domain.parse_event`, so that bulk paths and row-by-row paths accept the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.domain import (
    MAX_ID_LEN,
    MAX_TS_US,
    MIN_TS_US,
    POSITIVE_VALUE_TYPES,
    TARGET_KINDS,
    AgeGroup,
    Community,
    ContentItem,
    ContentKind,
    EntityStatus,
    Event,
    EventType,
    Surface,
    User,
)
from belong.errors import ValidationError

EVENT_SCHEMA = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("ts_us", pa.int64(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("actor", pa.string(), nullable=False),
        pa.field("target", pa.string(), nullable=False),
        pa.field("target_kind", pa.string(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("request_id", pa.string()),
        pa.field("surface", pa.string()),
        pa.field("position", pa.int32()),
        pa.field("propensity", pa.float64()),
    ]
)
EVENT_COLUMNS = tuple(EVENT_SCHEMA.names)
#: the event columns a world state is built from (:mod:`belong.state.build`): what ``belong train``, ``belong snapshot``
#: and a start from the log read (:meth:`belong.eventlog.EventStore.read_columns`)
STATE_COLUMNS = ("ts_us", "type", "actor", "target", "target_kind", "value")

USER_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("created_at_us", pa.int64(), nullable=False),
        pa.field("age_group", pa.string(), nullable=False),
        pa.field("locale", pa.string(), nullable=False),
        pa.field("interests", pa.list_(pa.string())),
        pa.field("status", pa.string(), nullable=False),
    ]
)
COMMUNITY_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("created_at_us", pa.int64(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("locale", pa.string(), nullable=False),
        pa.field("is_age_restricted", pa.bool_(), nullable=False),
        pa.field("discoverable", pa.bool_(), nullable=False),
        pa.field("invite_only", pa.bool_(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
    ]
)
CONTENT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("community_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("created_at_us", pa.int64(), nullable=False),
        pa.field("text", pa.string()),
        pa.field("status", pa.string(), nullable=False),
    ]
)

ENTITY_SCHEMAS = {"users": USER_SCHEMA, "communities": COMMUNITY_SCHEMA, "content": CONTENT_SCHEMA}


def _structs_to_table(records: Sequence[object], schema: pa.Schema) -> pa.Table:
    cols = {name: [getattr(r, name) for r in records] for name in schema.names}
    for name, vals in cols.items():
        if vals and isinstance(vals[0], tuple):
            cols[name] = [list(v) for v in vals]
        elif vals and hasattr(vals[0], "value") and not isinstance(vals[0], int | float | str):
            cols[name] = [None if v is None else v.value for v in vals]
    return pa.table(cols, schema=schema)


def events_to_table(events: Sequence[Event]) -> pa.Table:
    cols: dict[str, list] = {n: [] for n in EVENT_COLUMNS}
    for e in events:
        cols["event_id"].append(e.event_id)
        cols["ts_us"].append(e.ts_us)
        cols["type"].append(e.type.value)
        cols["actor"].append(e.actor)
        cols["target"].append(e.target)
        cols["target_kind"].append(e.target_kind.value)
        cols["value"].append(e.value)
        cols["request_id"].append(e.request_id)
        cols["surface"].append(None if e.surface is None else e.surface.value)
        cols["position"].append(e.position)
        cols["propensity"].append(e.propensity)
    return pa.table(cols, schema=EVENT_SCHEMA)


def users_to_table(users: Sequence[User]) -> pa.Table:
    return _structs_to_table(users, USER_SCHEMA)


def communities_to_table(communities: Sequence[Community]) -> pa.Table:
    return _structs_to_table(communities, COMMUNITY_SCHEMA)


def content_to_table(items: Sequence[ContentItem]) -> pa.Table:
    return _structs_to_table(items, CONTENT_SCHEMA)


def table_to_events(table: pa.Table) -> list[Event]:
    out = []
    for row in table.to_pylist():
        out.append(
            Event(
                event_id=row["event_id"], ts_us=row["ts_us"], type=EventType(row["type"]), actor=row["actor"],
                target=row["target"], target_kind=row["target_kind"], value=row["value"],
                request_id=row["request_id"], surface=None if row["surface"] is None else Surface(row["surface"]),
                position=row["position"], propensity=row["propensity"],
            )
        )
    return out


def empty_events() -> pa.Table:
    return EVENT_SCHEMA.empty_table()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select/cast a table's columns to ``schema``; missing nullable columns become nulls."""
    cols = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValidationError(field.name, f"cannot be read as {field.type}: {exc}") from None
            cols.append(col)
        elif field.nullable:
            cols.append(pa.nulls(table.num_rows, field.type))
        else:
            raise ValidationError(field.name, "is required")
    return pa.Table.from_arrays(cols, schema=schema)


def _first_bad(mask: pa.ChunkedArray | pa.Array) -> int | None:
    arr = np.asarray(pc.fill_null(mask, False))
    idx = np.flatnonzero(arr)
    return int(idx[0]) if idx.size else None


def _raise_if(mask, field: str, reason: str) -> None:
    row = _first_bad(mask)
    if row is not None:
        raise ValidationError(field, f"{reason} (row {row})")


_CONTROL_CHARS = r"[\x00-\x1f\x7f]"


def validate_event_table(table: pa.Table) -> pa.Table:
    """Vectorised validation of an event table; returns it conformed to :data:`EVENT_SCHEMA`.

    Raises :class:`ValidationError` for the first bad row (the whole table is then rejected).
    """
    t = conform(table, EVENT_SCHEMA)
    if t.num_rows == 0:
        return t
    for name in ("event_id", "actor", "target"):
        col = t.column(name)
        _raise_if(pc.is_null(col), name, "is required")
        lens = pc.utf8_length(col)
        _raise_if(pc.equal(lens, 0), name, "must not be empty")
        _raise_if(pc.greater(lens, MAX_ID_LEN), name, f"must be at most {MAX_ID_LEN} characters")
    for name in ("event_id", "actor", "target", "request_id"):  # as domain.parse_id: no control characters
        _raise_if(pc.match_substring_regex(t.column(name), _CONTROL_CHARS), name, "must not contain control characters")
    ts = t.column("ts_us")
    _raise_if(pc.or_(pc.less(ts, MIN_TS_US), pc.greater_equal(ts, MAX_TS_US)), "ts", "must be between 1970 and 2100")
    types = t.column("type")
    valid_types = pa.array([e.value for e in EventType])
    _raise_if(pc.invert(pc.is_in(types, valid_types)), "type", "is not a known event type")
    value = t.column("value")
    _raise_if(pc.invert(pc.is_finite(value)), "value", "must be finite")
    _raise_if(pc.less(value, 0), "value", "must be >= 0")
    pos_types = pa.array([e.value for e in POSITIVE_VALUE_TYPES])
    _raise_if(pc.and_(pc.is_in(types, pos_types), pc.less_equal(value, 0)), "value", "must be > 0 for this type")
    tk = t.column("target_kind")
    ok = None
    for etype, kinds in TARGET_KINDS.items():
        m = pc.and_(pc.equal(types, etype.value), pc.is_in(tk, pa.array([k.value for k in kinds])))
        ok = m if ok is None else pc.or_(ok, m)
    _raise_if(pc.invert(ok), "target_kind", "is not allowed for this event type")
    _raise_if(
        pc.and_(pc.equal(tk, "user"), pc.equal(t.column("actor"), t.column("target"))),
        "target", "cannot target its own actor",
    )
    is_imp = pc.equal(types, EventType.IMPRESSION.value)
    for name in ("request_id", "surface", "position", "propensity"):
        _raise_if(pc.and_(is_imp, pc.is_null(t.column(name))), name, "is required on impression events")
    surf = t.column("surface")
    _raise_if(
        pc.and_(pc.is_valid(surf), pc.invert(pc.is_in(surf, pa.array([s.value for s in Surface])))),
        "surface", "is not a known surface",
    )
    _raise_if(pc.less(t.column("position"), 0), "position", "must be >= 0")
    prop = t.column("propensity")
    _raise_if(pc.or_(pc.less_equal(prop, 0), pc.greater(prop, 1)), "propensity", "must be in (0, 1]")
    return t


def validate_entity_table(kind: str, table: pa.Table) -> pa.Table:
    schema = ENTITY_SCHEMAS[kind]
    t = conform(table, schema)
    if t.num_rows == 0:
        return t
    ids = t.column("id")
    _raise_if(pc.is_null(ids), "id", "is required")
    _raise_if(pc.equal(pc.utf8_length(ids), 0), "id", "must not be empty")
    _raise_if(pc.greater(pc.utf8_length(ids), MAX_ID_LEN), "id", f"must be at most {MAX_ID_LEN} characters")
    ts = t.column("created_at_us")
    _raise_if(pc.or_(pc.less(ts, MIN_TS_US), pc.greater_equal(ts, MAX_TS_US)), "created_at",
              "must be between 1970 and 2100")
    _raise_if(pc.invert(pc.is_in(t.column("status"), pa.array([s.value for s in EntityStatus]))), "status",
              "is not a known status")
    if kind == "users":
        _raise_if(pc.invert(pc.is_in(t.column("age_group"), pa.array([a.value for a in AgeGroup]))), "age_group",
                  "is not a known age group")
    if kind == "communities":
        _raise_if(pc.is_null(t.column("name")), "name", "is required")
    if kind == "content":
        _raise_if(pc.invert(pc.is_in(t.column("kind"), pa.array([k.value for k in ContentKind]))), "kind",
                  "is not a known content kind")
    return t


def concat(tables: Iterable[pa.Table], schema: pa.Schema) -> pa.Table:
    tables = [conform(t, schema) for t in tables]
    return pa.concat_tables(tables) if tables else schema.empty_table()
