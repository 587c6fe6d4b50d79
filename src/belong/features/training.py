"""Point-in-time correct training sets: one row per (user, candidate, ts) with features as of ts and labels after.

Rows come from one of two places:

* **Impressions** (the default): every ``impression`` event of the surface is a row (``request_id``, ``position``,
  ``propensity`` kept for off-policy use).
* **A candidates table**, where no impressions exist yet (public datasets, a new surface). Contract: the candidate
  sources (``belong.sources``) are run for each user at a cut time ``T`` on the log before ``T`` (a time split, or
  the given split of a dataset), and their union is passed with columns ``user_id``, ``item_id``, ``ts_us`` (= T),
  optional ``request_id``, and optional request-time columns ``src_<source>_score`` / ``src_<source>_rank`` /
  ``uc_text_similarity``. Labels are then the positive actions after ``T`` within ``window_s`` (use the span up to
  the end of the split as the window for a validation split). Candidates no source produced are not rows: the
  ranker learns to order what the sources retrieve.

Labels per surface (actions by the row's user on the row's candidate, strictly after the row's ts and within
``window_s``; an action is credited to the latest row of the same (user, candidate) before it — last touch):

=============  ====================================  ===================================================
surface        ``label`` = 1 (primary)               second objective
=============  ====================================  ===================================================
communities    ``joined``: a join                     ``retained_7d``: no leave within 7 days of the join
people         ``requested``: a friend request sent   ``accepted``: a friend_accept between the two after it
content        ``engaged``: click/reaction/message/   —
               voice_minutes on the item
=============  ====================================  ===================================================

Shown-not-taken rows are negatives (``label`` 0). A block or report of the candidate by the user within the window
is a strong negative: ``label`` -1 and ``weight`` = ``strong_negative_weight`` (other rows weigh 1). A second
objective whose outcome lies beyond the end of the log is null (not observable yet).

Features: rows are processed in time order while one :class:`FeatureState` folds the log; each row's entity rows
are read with only the events strictly before its ts folded, so a change at or after a label's time never reaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from belong.domain import Surface, parse_enum
from belong.errors import ValidationError
from belong.eventlog.base import EventStore
from belong.features.assemble import (
    CANDIDATE_ENTITY,
    candidate_features,
    check_request_features,
    request_columns,
)
from belong.features.catalog import Catalog
from belong.features.registry import DAY_S, SURFACE_FEATURES, feature_spec_of_column
from belong.features.state import EventCursor, FeatureState

US = 1_000_000
ROW_COLUMNS = ("request_id", "user_id", "item_id", "ts_us")
_IMPRESSION_EXTRA = ("position", "propensity")
_TARGET_KIND = {Surface.COMMUNITIES: "community", Surface.PEOPLE: "user", Surface.CONTENT: "content"}
_POSITIVE_TYPES = {
    Surface.COMMUNITIES: ("join",),
    Surface.PEOPLE: ("friend_request",),
    Surface.CONTENT: ("click", "reaction", "message", "voice_minutes"),
}
PRIMARY_LABEL = {Surface.COMMUNITIES: "joined", Surface.PEOPLE: "requested", Surface.CONTENT: "engaged"}
_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64(), "str": pa.string(), "list": pa.list_(pa.string())}


def impressions(events: pa.Table, surface: Surface) -> pa.Table:
    """The impression rows of one surface: request_id, user_id, item_id, ts_us, position, propensity."""
    mask = pc.and_(pc.equal(events["type"], "impression"), pc.equal(events["surface"], surface.value))
    imp = events.filter(mask)
    return pa.table({
        "request_id": imp["request_id"], "user_id": imp["actor"], "item_id": imp["target"],
        "ts_us": imp["ts_us"], "position": imp["position"], "propensity": imp["propensity"],
    })


def _actions(events: pa.Table, types: Sequence[str], target_kind: str) -> pd.DataFrame:
    mask = pc.and_(pc.is_in(events["type"], pa.array(list(types))), pc.equal(events["target_kind"], target_kind))
    sel = events.filter(mask)
    return pd.DataFrame({
        "user_id": sel["actor"].to_numpy(zero_copy_only=False).astype(object),
        "item_id": sel["target"].to_numpy(zero_copy_only=False).astype(object),
        "ts": sel["ts_us"].to_numpy(),
    })


def _credit(actions: pd.DataFrame, rows: pd.DataFrame, window_us: int | None) -> pd.Series:
    """Earliest action ts credited to each row (last touch: the latest row of the pair strictly before the
    action, within the window); NaN for rows without one. Indexed like ``rows``."""
    out = pd.Series(np.nan, index=rows.index)
    if actions.empty or rows.empty:
        return out
    right = rows[["user_id", "item_id", "ts"]].assign(row=rows.index).sort_values("ts", kind="stable")
    left = actions.sort_values("ts", kind="stable")
    m = pd.merge_asof(
        left, right, on="ts", by=["user_id", "item_id"], direction="backward",
        allow_exact_matches=False, tolerance=window_us,
    )
    # merge_asof keeps the left (action) ts; the credited row is in "row"
    m = m.dropna(subset=["row"])
    first = m.groupby("row")["ts"].min()
    out.loc[first.index.astype(np.int64)] = first.to_numpy(dtype=float)
    return out


def _next_after(
    events_df: pd.DataFrame, when: pd.Series, rows: pd.DataFrame, *, exact: bool
) -> pd.Series:
    """For rows with a time in ``when``, the first event of the same pair at/after it (NaN when none)."""
    out = pd.Series(np.nan, index=rows.index)
    have = when.dropna()
    if have.empty or events_df.empty:
        return out
    left = pd.DataFrame({
        "user_id": rows.loc[have.index, "user_id"].to_numpy(), "item_id": rows.loc[have.index, "item_id"].to_numpy(),
        "ts": have.to_numpy(dtype=np.int64), "row": have.index.to_numpy(),
    }).sort_values("ts", kind="stable")
    right = events_df.assign(next_ts=events_df["ts"]).sort_values("ts", kind="stable")
    m = pd.merge_asof(left, right, on="ts", by=["user_id", "item_id"], direction="forward", allow_exact_matches=exact)
    out.loc[m["row"].to_numpy()] = m["next_ts"].to_numpy(dtype=float)
    return out


def _nullable(values: pd.Series, known: pd.Series) -> pd.Series:
    """0/1 as a nullable Int8 column, null where the outcome is not observable yet."""
    col = pd.Series(values.astype(np.int8), dtype="Int8")
    col[~known] = pd.NA
    return col


def label(
    rows: pd.DataFrame,
    events: pa.Table,
    surface: Surface,
    *,
    window_us: int | None,
    log_end_us: int,
    strong_negative_weight: float,
) -> pd.DataFrame:
    """Label columns for ``rows`` (columns user_id, item_id, ts); see the module docstring."""
    kind = _TARGET_KIND[surface]
    positive = _credit(_actions(events, _POSITIVE_TYPES[surface], kind), rows, window_us)
    negative = _credit(_actions(events, ("block", "report"), kind), rows, window_us)
    primary = positive.notna().astype(np.int8)
    strong = negative.notna()
    out = pd.DataFrame({PRIMARY_LABEL[surface]: primary}, index=rows.index)
    retention_us = 7 * DAY_S * US
    if surface is Surface.COMMUNITIES:
        leave_at = _next_after(_actions(events, ("leave",), kind), positive, rows, exact=True)
        left_early = leave_at.notna() & (leave_at <= positive + retention_us)
        known = positive.isna() | left_early | (positive + retention_us <= log_end_us)
        out["retained_7d"] = _nullable(positive.notna() & ~left_early, known)
    elif surface is Surface.PEOPLE:
        acc = _actions(events, ("friend_accept",), "user")
        both = pd.concat([acc, acc.rename(columns={"user_id": "item_id", "item_id": "user_id"})], ignore_index=True)
        accepted_at = _next_after(both, positive, rows, exact=True)
        limit = positive + (np.inf if window_us is None else window_us)
        accepted = accepted_at.notna() & (accepted_at <= limit)
        out["accepted"] = _nullable(accepted, accepted | positive.isna() | (limit <= log_end_us))
    out["label"] = np.where(strong, -1, primary).astype(np.int8)
    out["weight"] = np.where(strong, strong_negative_weight, 1.0)
    return out


def _load(source: EventStore | pa.Table, catalog: Catalog | None) -> tuple[pa.Table, Catalog]:
    if isinstance(source, EventStore):
        return source.read_events(), catalog or Catalog.from_store(source)
    if isinstance(source, pa.Table):
        from belong.schema import validate_event_table

        events = validate_event_table(source)
        return events.take(pc.sort_indices(events, [("ts_us", "ascending")])), catalog or Catalog()
    raise ValidationError("events", f"must be an EventStore or an Arrow table, got {type(source).__name__}")


def _check_rows(rows: pa.Table, surface: Surface) -> tuple[pa.Table, list[str]]:
    """Validate a candidates table; returns it and its request-time columns."""
    if not isinstance(rows, pa.Table):
        raise ValidationError("rows", f"must be an Arrow table, got {type(rows).__name__}")
    for name in ("user_id", "item_id", "ts_us"):
        if name not in rows.column_names:
            raise ValidationError(name, "is a required column of the candidates table")
        if rows[name].null_count:
            raise ValidationError(name, "must not contain nulls")
    for name in ("user_id", "item_id"):  # ids are strings everywhere outside a model
        col = rows[name]
        if pa.types.is_integer(col.type):
            rows = rows.set_column(rows.schema.get_field_index(name), name, pc.cast(col, pa.string()))
        elif not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            raise ValidationError(name, f"must hold string ids, got {col.type}")
    if not pa.types.is_integer(rows["ts_us"].type):
        raise ValidationError("ts_us", f"must be integer microseconds, got {rows['ts_us'].type}")
    request = [c for c in rows.column_names if c not in ROW_COLUMNS and c not in _IMPRESSION_EXTRA]
    check_request_features(dict.fromkeys(request), surface)
    return rows, request


def _feature_columns(
    surface: Surface,
    events: pa.Table,
    catalog: Catalog,
    users: list[str],
    items: list[str],
    stamps: list[int],
    request_values: dict[str, list[Any]],
    feature_cols: list[str],
    progress: Callable[[int], None] | None,
) -> dict[str, list[Any]]:
    """Feature values of time-ordered rows: one state folds the log, each row sees events strictly before it.
    Entity rows are computed once per (entity, distinct ts) — a request's candidates share its user's row."""
    columns: dict[str, list[Any]] = {c: [] for c in feature_cols}
    request = list(request_values)
    state = FeatureState(catalog)
    cursor = EventCursor(state, [events])
    entity = CANDIDATE_ENTITY[surface]
    user_rows: dict[str, dict[str, Any]] = {}
    item_rows: dict[str, dict[str, Any]] = {}
    current: int | None = None
    for i, (u, item, t) in enumerate(zip(users, items, stamps, strict=True)):
        if t != current:
            cursor.advance_to(t)
            user_rows.clear()
            item_rows.clear()
            current = t
        urow = user_rows.get(u)
        if urow is None:
            urow = user_rows[u] = state.user_row(u, t)
        irow = item_rows.get(item)
        if irow is None:
            irow = item_rows[item] = state.row(entity, item, t)
        values = {c: request_values[c][i] for c in request}
        for name, value in candidate_features(surface, u, urow, item, irow, values, request).items():
            columns[name].append(value)
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1)
    if progress is not None:
        progress(len(users))
    return columns


def build_training_set(
    source: EventStore | pa.Table,
    surface: Surface | str,
    rows: pa.Table | None = None,
    *,
    catalog: Catalog | None = None,
    window_s: int | None = 7 * DAY_S,
    strong_negative_weight: float = 3.0,
    progress: Callable[[int], None] | None = None,
) -> pa.Table:
    """A training table for ``surface``; see the module docstring for rows, labels and the candidates contract.

    ``source`` is an event store (events and catalogue) or an event table (then pass ``catalog``). Output rows
    are in time order: ``request_id``, ``user_id``, ``item_id``, ``ts_us`` (+ ``position``, ``propensity`` for
    impressions), the surface's features (:data:`SURFACE_FEATURES`), its request-time columns, then the labels
    and ``weight``. The whole event table is held in memory.
    ``progress(n)`` is called with the number of rows done, every 1000 rows and at the end.
    """
    surface = parse_enum(surface, Surface, "surface")
    if window_s is not None and window_s <= 0:
        raise ValidationError("window_s", f"must be positive, got {window_s}")
    if strong_negative_weight <= 0:
        raise ValidationError("strong_negative_weight", f"must be positive, got {strong_negative_weight}")
    events, catalog = _load(source, catalog)
    if rows is None:
        rows = impressions(events, surface)
        if rows.num_rows == 0:
            raise ValidationError(
                "rows", f"the log has no {surface.value} impressions; pass a candidates table (user_id, item_id, ts_us)"
            )
        request: list[str] = []
    else:
        rows, request = _check_rows(rows, surface)
    order = pc.sort_indices(rows, [("ts_us", "ascending")])
    rows = rows.take(order)
    if "request_id" not in rows.column_names:
        rows = rows.append_column("request_id", pa.nulls(rows.num_rows, pa.string()))
    users = rows["user_id"].to_pylist()
    items = rows["item_id"].to_pylist()
    stamps = rows["ts_us"].to_pylist()
    request_values = {c: rows[c].to_pylist() for c in request}
    feature_cols = list(SURFACE_FEATURES[surface]) + request_columns(surface, request)
    columns = _feature_columns(
        surface, events, catalog, users, items, stamps, request_values, feature_cols, progress
    )
    frame = pd.DataFrame({"user_id": users, "item_id": items, "ts": stamps})
    span_end = int(pc.max(events["ts_us"]).as_py()) if events.num_rows else 0
    labels = label(
        frame, events, surface, window_us=None if window_s is None else window_s * US,
        log_end_us=span_end, strong_negative_weight=strong_negative_weight,
    )
    out: dict[str, pa.Array | pa.ChunkedArray] = {c: rows[c] for c in ROW_COLUMNS}
    for c in _IMPRESSION_EXTRA:
        if c in rows.column_names:
            out[c] = rows[c]
    for name in feature_cols:
        spec = feature_spec_of_column(name)
        out[name] = pa.array(columns[name], type=_ARROW_TYPES[spec.dtype])
    for name in labels.columns:
        out[name] = pa.Array.from_pandas(labels[name])
    return pa.table(out)
