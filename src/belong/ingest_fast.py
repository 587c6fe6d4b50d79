"""Vectorised validation of a chunk of event rows (Arrow columns, numpy): the fast path of ``belong ingest``.

:func:`fast_events` turns a chunk read from a file (JSONL, CSV or Parquet, as Arrow columns) into the event table
:func:`belong.domain.parse_event` would give row by row — or returns None when it cannot vouch for every row. It is
deliberately conservative: anything it does not recognise as plainly valid (a bad row, but also an id with
non-ASCII characters or surrounding spaces, a number written as ``1_000``, an enum in capitals) sends the whole
chunk back to the row-by-row path, which then reports the bad rows exactly as before (field and line). So the
fast path never accepts a row the row path would refuse and never stores a different value
(``tests/test_ingest_fast.py`` checks both on the same files).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from belong.domain import (
    EVENT_FIELDS,
    MAX_ID_LEN,
    MAX_TS_US,
    MIN_TS_US,
    POSITIVE_VALUE_TYPES,
    TARGET_KINDS,
    EventType,
    Surface,
    TargetKind,
)
from belong.schema import EVENT_SCHEMA

#: printable ASCII, no surrounding space, 1..MAX_ID_LEN characters: what parse_id keeps unchanged
_ID = rf"^[!-~](?:[ -~]{{0,{MAX_ID_LEN - 2}}}[!-~])?$"
_NUM = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
_INT = r"^\d{1,10}$"
_EPOCH = r"^\d{1,11}(?:\.\d{1,6})?$"
_ISO = (r"^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
        r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?$")
_TYPES = [t.value for t in EventType]
_KINDS = [k.value for k in TargetKind]
_MAX_POSITION = 2**31 - 1


class _Refuse(Exception):
    """The chunk is not for the fast path (the row path decides)."""


def _all(mask: pa.Array | pa.ChunkedArray) -> bool:
    return bool(pc.all(pc.fill_null(mask, False)).as_py()) if len(mask) else True


def _col(table: pa.Table, name: str) -> pa.Array | None:
    """A column as one array; None when absent or entirely null."""
    if name not in table.column_names:
        return None
    col = table.column(name).combine_chunks()
    if pa.types.is_null(col.type) or col.null_count == len(col):
        return None
    return col


def _text(col: pa.Array) -> pa.Array:
    """A column of text (integers as their digits, as ``str(raw)`` gives them); anything else is refused."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        return col.cast(pa.string())
    if pa.types.is_integer(col.type):
        return col.cast(pa.string())
    raise _Refuse


def _present(col: pa.Array | None, n: int) -> np.ndarray:
    """Rows where a field is given (not null, not the empty string: what the row path treats as absent)."""
    if col is None:
        return np.zeros(n, bool)
    given = pc.is_valid(col)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        given = pc.and_(given, pc.not_equal(col, ""))
    return np.asarray(pc.fill_null(given, False))


def _ids(col: pa.Array | None) -> pa.Array:
    if col is None or col.null_count:
        raise _Refuse
    text = _text(col)
    if not _all(pc.match_substring_regex(text, _ID)):
        raise _Refuse
    return text


def _numbers(col: pa.Array, rows: np.ndarray) -> np.ndarray:
    """float64 of ``col`` (numbers, or text that is plainly a number) on ``rows`` (others: 0)."""
    out = np.zeros(len(col), np.float64)
    if not rows.any():
        return out
    sub = col.filter(pa.array(rows))
    if pa.types.is_integer(sub.type) or pa.types.is_floating(sub.type):
        vals = sub.cast(pa.float64())
    elif pa.types.is_string(sub.type) or pa.types.is_large_string(sub.type):
        if not _all(pc.match_substring_regex(sub, _NUM)):
            raise _Refuse
        vals = sub.cast(pa.float64())
    else:
        raise _Refuse
    arr = np.asarray(vals.to_numpy(zero_copy_only=False), np.float64)
    if not np.isfinite(arr).all():
        raise _Refuse
    out[rows] = arr
    return out


def _enum(col: pa.Array, values: list[str]) -> pa.Array:
    text = _text(col)
    if not _all(pc.is_in(text, value_set=pa.array(values))):
        raise _Refuse
    return text


def _timestamps(table: pa.Table, n: int) -> np.ndarray:
    ts_us, ts, stamp = _col(table, "ts_us"), _col(table, "ts"), _col(table, "timestamp")
    if ts_us is not None:
        if ts is not None or stamp is not None or ts_us.null_count:
            raise _Refuse
        if pa.types.is_string(ts_us.type) and _all(pc.match_substring_regex(ts_us, r"^\d{1,16}$")):
            ts_us = ts_us.cast(pa.int64())  # CSV: digits
        if not pa.types.is_integer(ts_us.type):
            raise _Refuse
        us = np.asarray(ts_us.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    else:
        if (ts is None) == (stamp is None):
            raise _Refuse  # neither (the row path names the missing field) or both (it picks per row)
        raw = ts if ts is not None else stamp
        assert raw is not None
        if raw.null_count:
            raise _Refuse
        if pa.types.is_integer(raw.type):
            sec = np.asarray(raw.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
            if (np.abs(sec) > MAX_TS_US // 1_000_000).any():
                raise _Refuse
            us = sec * 1_000_000
        elif pa.types.is_floating(raw.type):
            us = _from_seconds(np.asarray(raw.to_numpy(zero_copy_only=False), np.float64))
        elif pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
            if _all(pc.match_substring_regex(raw, _EPOCH)):
                us = _from_seconds(np.asarray(raw.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64))
            elif _all(pc.match_substring_regex(raw, _ISO)):
                us = _from_iso(raw)
            else:
                raise _Refuse
        else:
            raise _Refuse
    if len(us) and (us.min() < MIN_TS_US or us.max() >= MAX_TS_US):
        raise _Refuse
    return us


def _from_seconds(sec: np.ndarray) -> np.ndarray:
    """``round(sec * 1_000_000)`` as parse_ts computes it (float product, round half to even)."""
    if not np.isfinite(sec).all() or (np.abs(sec) > MAX_TS_US / 1e6).any():
        raise _Refuse
    return np.rint(sec * 1e6).astype(np.int64)


def _from_iso(text: pa.Array) -> np.ndarray:
    """ISO-8601 text (checked by :data:`_ISO`) as parse_ts computes it: the exact microseconds of the UTC time,
    through ``datetime.timestamp()`` (a float of seconds) and back."""
    parts = pc.extract_regex(text, r"^(?P<d>\d{4}-\d{2}-\d{2})[T ](?P<t>\d{2}:\d{2}:\d{2})(?P<f>\.\d{1,6})?"
                                   r"(?P<z>Z|[+-]\d{2}:\d{2})?$")
    day, clock, frac, zone = (parts.field(k) for k in ("d", "t", "f", "z"))
    stamp = pc.binary_join_element_wise(day, clock, "T")
    try:
        sec = np.asarray(stamp.to_numpy(zero_copy_only=False).astype("datetime64[s]").astype(np.int64), np.int64)
    except ValueError:
        raise _Refuse from None  # a day that does not exist (Feb 30)
    frac = pc.if_else(pc.equal(frac, ""), ".0", frac)  # an optional group that did not match is ""
    digits = pc.utf8_rpad(pc.utf8_slice_codeunits(frac, 1), 6, "0")
    micro = np.asarray(digits.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
    zone = pc.if_else(pc.equal(zone, ""), "Z", zone)
    signed = pc.not_equal(zone, "Z")
    hh = pc.if_else(signed, pc.utf8_slice_codeunits(zone, 1, 3), "0").cast(pa.int64())
    mm = pc.if_else(signed, pc.utf8_slice_codeunits(zone, 4, 6), "0").cast(pa.int64())
    sign = np.where(np.asarray(pc.starts_with(zone, "-")), -1, 1)
    hours, minutes = (np.asarray(x.to_numpy(zero_copy_only=False), np.int64) for x in (hh, mm))
    off = sign * (hours * 3600 + minutes * 60)
    exact = (sec - off) * 1_000_000 + micro
    return np.rint((exact / 1e6) * 1e6).astype(np.int64)


def fast_events(table: pa.Table) -> pa.Table | None:
    """The chunk as a validated :data:`EVENT_SCHEMA` table, or None when the row path must decide."""
    try:
        return _fast(table)
    except (_Refuse, pa.ArrowException):
        return None


def _fast(table: pa.Table) -> pa.Table:
    if set(table.column_names) - EVENT_FIELDS - {"ts_us"}:
        raise _Refuse  # an unknown field: the row path names it
    n = table.num_rows
    event_id, actor, target = (_ids(_col(table, k)) for k in ("event_id", "actor", "target"))
    etype = _col(table, "type")
    if etype is None or etype.null_count:
        raise _Refuse
    etype = _enum(etype, _TYPES)
    codes = np.asarray(pc.index_in(etype, value_set=pa.array(_TYPES)).to_numpy(zero_copy_only=False), np.int64)
    types = [EventType(t) for t in _TYPES]
    # target kind: given (one the type allows) or the type's default
    kind_in = _col(table, "target_kind")
    default = np.array([_KINDS.index(TARGET_KINDS[t][0].value) for t in types], np.int64)[codes]
    kind = default.copy()
    given = _present(kind_in, n)
    if given.any():
        assert kind_in is not None
        text = _enum(kind_in.filter(pa.array(given)), _KINDS)
        kind[given] = np.asarray(pc.index_in(text, value_set=pa.array(_KINDS)).to_numpy(zero_copy_only=False))
    allowed = np.zeros((len(types), len(_KINDS)), bool)
    for i, t in enumerate(types):
        for k in TARGET_KINDS[t]:
            allowed[i, _KINDS.index(k.value)] = True
    if not allowed[codes, kind].all():
        raise _Refuse
    ts_us = _timestamps(table, n)
    # value: default 1.0; >= 0, > 0 for the positive types
    value_in = _col(table, "value")
    has_value = _present(value_in, n)
    value = np.ones(n, np.float64)
    if has_value.any():
        assert value_in is not None
        value[has_value] = _numbers(value_in, has_value)[has_value]
    positive = np.isin(codes, [_TYPES.index(t.value) for t in POSITIVE_VALUE_TYPES])
    if (value < 0).any() or (positive & (value <= 0)).any():
        raise _Refuse
    user = kind == _KINDS.index(TargetKind.USER.value)
    if user.any() and pc.any(pc.equal(actor.filter(pa.array(user)), target.filter(pa.array(user)))).as_py():
        raise _Refuse  # a user event aimed at its own actor
    request_id, surface, position, propensity = _impression_fields(table, codes, n)
    kinds_arr = pa.array(_KINDS).take(pa.array(kind))
    return pa.Table.from_arrays(
        [event_id, pa.array(ts_us, pa.int64()), etype, actor, target, kinds_arr, pa.array(value, pa.float64()),
         request_id, surface, position, propensity], schema=EVENT_SCHEMA)


def _impression_fields(table: pa.Table, codes: np.ndarray, n: int) -> tuple[pa.Array, ...]:
    imp = codes == _TYPES.index(EventType.IMPRESSION.value)
    click = codes == _TYPES.index(EventType.CLICK.value)
    cols = {k: _col(table, k) for k in ("request_id", "surface", "position", "propensity")}
    given = {k: _present(c, n) for k, c in cols.items()}
    other = ~(imp | click)
    if any((g & other).any() for g in given.values()) or (given["propensity"] & click).any():
        raise _Refuse  # only impressions (and clicks, without a propensity) carry them
    if imp.any() and not all(g[imp].all() for g in given.values()):
        raise _Refuse  # an impression needs all four
    out_req = pa.nulls(n, pa.string())
    out_surface = pa.nulls(n, pa.string())
    out_pos = pa.nulls(n, pa.int32())
    out_prop = pa.nulls(n, pa.float64())
    mask = given["request_id"]
    if mask.any():
        req = _ids(cols["request_id"].filter(pa.array(mask)))  # type: ignore[union-attr]
        out_req = _scatter(req, mask, pa.string())
    mask = given["surface"]
    if mask.any():
        surf = _enum(cols["surface"].filter(pa.array(mask)), [s.value for s in Surface])  # type: ignore[union-attr]
        out_surface = _scatter(surf, mask, pa.string())
    mask = given["position"]
    if mask.any():
        pos_in = cols["position"].filter(pa.array(mask))  # type: ignore[union-attr]
        if pa.types.is_integer(pos_in.type):
            pos = np.asarray(pos_in.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        elif pa.types.is_string(pos_in.type) and _all(pc.match_substring_regex(pos_in, _INT)):
            pos = np.asarray(pos_in.cast(pa.int64()).to_numpy(zero_copy_only=False), np.int64)
        else:
            raise _Refuse
        if (pos < 0).any() or (pos > _MAX_POSITION).any():
            raise _Refuse
        out_pos = _scatter(pa.array(pos, pa.int32()), mask, pa.int32())
    mask = given["propensity"]
    if mask.any():
        col = cols["propensity"]
        assert col is not None
        p = _numbers(col, mask)[mask]
        if (p <= 0).any() or (p > 1).any():
            raise _Refuse
        out_prop = _scatter(pa.array(p, pa.float64()), mask, pa.float64())
    return out_req, out_surface, out_pos, out_prop


def _scatter(values: pa.Array, mask: np.ndarray, typ: pa.DataType) -> pa.Array:
    """``values`` at the rows of ``mask``, nulls elsewhere."""
    idx = np.full(mask.size, -1, np.int64)
    idx[mask] = np.arange(int(mask.sum()))
    return values.cast(typ).take(pa.array(idx, mask=idx < 0))
