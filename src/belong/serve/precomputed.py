"""Precomputed candidate lists: a batch job runs :meth:`Pipeline.candidates` for every person and stores the packed
lists in Redis, versioned with the model; the API's cold path reads a stored list instead of running the sources.

* ``belong candidates precompute --store S --redis URL`` (:func:`precompute`) loads the newest ``belong train``
  artifact of ``S/models`` (the version the API serves), runs each surface's candidate stage for every user and
  writes ``PREFIX<version>:<surface>:<user>`` = the rows of :class:`~belong.serve.cache.Packed` and the time they
  were made, in columns (:func:`_encode`: a JSON header, row offsets, three zlib sections of JSON; plain numbers and
  strings, no pickle), and ``PREFIX<version>:meta``.
* The API (``BELONG_PRECOMPUTED_REDIS=URL``) on a miss of its in-process cache reads the stored list
  (:meth:`PrecomputedLists.entry`) as a :class:`StoredListV2`: only the rows a request reads (the head its rules and
  explanations need) are decompressed and parsed, as a few objects a row, the rest when something asks for them
  (docs/SCALING.md: parsing all 200 rows was most of the cold path's CPU). Lists written before as one JSON
  document (:func:`_encode_v1`) are read too (:class:`StoredList`). A list older than
  ``BELONG_PRECOMPUTED_MAX_AGE_S`` (default 86400) or of another version is not used (the live path runs).
* A person's own events make their stored lists *stale* (:meth:`PrecomputedLists.mark_stale`, as the in-process cache
  invalidates: :func:`~belong.serve.cache.dropped_lists`), recorded in the process and in ``PREFIX<version>:stale`` (a
  sorted set, member ``surface:user``, score the time marked; read once per version on the first read, so a restarted
  replica knows them too). A list made before its mark is stale: it answers at once, the live rules removing what the
  event made wrong (the joined community, the blocked person), and is refreshed as ``BELONG_PRECOMPUTED_REFRESH`` says
  (:data:`REFRESH_MODES`): ``inline`` (default), a background run of the live path writes it back
  (:meth:`PrecomputedLists.put`), as the in-process cache serves a stale list while it is revalidated; ``job``,
  ``belong candidates precompute --stale`` on a schedule (a list the process already holds is then kept until its
  cache TTL, ``BELONG_CANDIDATE_TTL_S``: the freshness bound is the job's period plus that). A list made after its
  mark is fresh again. Before, the event deleted the list and the person's next request waited for the live path: at
  1M, 14% of the cold path's samples.
* Freshness is reported: ``belong_precomputed_total{result}`` (hit / stale / miss / expired / error) and the age
  of each list served (``belong_precomputed_age_seconds``) in ``/metrics``; :meth:`PrecomputedLists.report` in
  ``/readyz`` (with the lists marked stale and not yet refreshed).

Environment: ``BELONG_PRECOMPUTED_REDIS`` (unset: off), ``BELONG_PRECOMPUTED_PREFIX`` (default
``belong:candidates:``), ``BELONG_PRECOMPUTED_MAX_AGE_S``, ``BELONG_PRECOMPUTED_REFRESH`` (``inline`` or ``job``).
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram

from belong.domain import SURFACE_NAME, EntityStatus, Event, Surface
from belong.errors import ValidationError
from belong.pipeline.types import Candidates, Merged, PackedMerged, Reason, Request
from belong.serve.cache import UNEXPLAINED, Entry, Packed, _unpack_one, dropped_lists
from belong.serve.redis_get import AsyncGetter, supports

log = logging.getLogger("belong.serve.precomputed")
DEFAULT_PREFIX = "belong:candidates:"
DEFAULT_MAX_AGE_S = 86_400.0
_AGE_BUCKETS = (1, 10, 60, 300, 900, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86_400, 7 * 86_400)
#: ``BELONG_PRECOMPUTED_REFRESH``: who refreshes a stale stored list. ``inline``: the API, a background run of the
#: live path on its first read (self-sufficient; the run shares the event loop's core and GIL: at 1M each is 37 ms
#: median, 146 ms at worst, and the requests meanwhile wait). ``job``: ``belong candidates precompute --stale``, on
#: its schedule (the freshness bound); the API answers the stale list with the live rules until then
REFRESH_MODES = ("inline", "job")


def _encode_v1(made_at: float, rows: tuple) -> bytes:
    """A stored list as written before :func:`_encode` (still read: :class:`StoredList`): the JSON of ``[made_at,
    rows]``, zlib-compressed at level 1. The rows repeat source names and explanation strings: on a 100,000-person
    world a communities list went 80 KB -> 15 KB, people 41 -> 5.3 KB, content 33 -> 5.9 KB (docs/SCALING.md)."""
    return zlib.compress(orjson.dumps([made_at, rows], option=orjson.OPT_SERIALIZE_NUMPY), 1)


#: the first bytes of a stored list in columns (:func:`_encode`): never the start of JSON (``[``) or of a zlib stream
MAGIC = b"\x00BL2"
_OPT = orjson.OPT_SERIALIZE_NUMPY


def _joined(parts: list[bytes]) -> tuple[bytes, bytes]:
    """``parts`` joined by commas, and the offset of each part's start (little-endian int32, one more: the end plus
    one), so that parts ``i:j`` are ``body[off[i]:off[j] - 1]`` without reading the others."""
    off = np.zeros(len(parts) + 1, "<i4")
    np.cumsum([len(p) + 1 for p in parts], out=off[1:])
    return b",".join(parts), off.tobytes()


#: how a pipeline explains a candidate from its list's reasons (:meth:`Pipeline.explain
#: <belong.pipeline.pipeline.Pipeline.explain>`)
Explainer = Callable[[Merged, dict[str, tuple[int, str]]], Any]


def _encode(made_at: float, rows: tuple, explain: Explainer | None = None) -> bytes:
    """A stored list (the rows of :class:`~belong.serve.cache.Packed`) in columns: :data:`MAGIC`, the header's
    length (uint32), a JSON header ``[made_at, rows, names, len A, len B, len C]``, the row offsets of A and of B
    (see :func:`_joined`), then three zlib sections:

    * A, what rules, selection and hydration read: per row ``[item, score, [source, rank, score, ...], [feature,
      value, ...]]``, sources and feature names as indices into ``names``;
    * B, each row's reason texts, one per source, and with ``explain`` (the serving pipeline's) its explanation
      made now: the sources' order (as indices of the row's sources) and the sentence shown. The explanation is a
      function of the row's ranks and texts and of the scorer's weights, which the model version fixes, so a
      request reads it (:meth:`StoredListV2.explained`) instead of making it (a fifth of a cold request's
      ``finish`` at 1,000,000 people: docs/SCALING.md);
    * C, the reasons' data of every row (no answer reads it: :attr:`StoredListV2.rows` only).

    A request decompresses and parses only the head it reads, as a few objects a row (the whole JSON row of
    :func:`_encode_v1` made about sixty: names, texts and data repeated per row)."""
    names: dict[str, int] = {}
    a_rows: list[bytes] = []
    b_rows: list[bytes] = []
    data: list[list] = []
    for item, score, hits, features in rows:
        flat: list[Any] = []
        for src, rank, cs, _text, _data in hits:
            flat += (names.setdefault(src, len(names)), rank, cs)
        feats: list[Any] = []
        for name, value in features:
            feats += (names.setdefault(name, len(names)), value)
        a_rows.append(orjson.dumps([item, score, flat, feats], option=_OPT))
        texts = [h[3] for h in hits]
        if explain is None:
            b_rows.append(orjson.dumps([texts]))
        else:
            e = explain(_unpack_light((item, score, hits, features))[0],  # the candidate a request's rules hand on
                        {src: (rank, text) for src, rank, _cs, text, _d in hits})
            where = {h[0]: j for j, h in enumerate(hits)}
            b_rows.append(orjson.dumps([texts, [where[src] for src in e.sources], e.text]))
        data.append([h[4] for h in hits])
    body_a, off_a = _joined(a_rows)
    body_b, off_b = _joined(b_rows)
    za, zb = zlib.compress(body_a, 1), zlib.compress(body_b, 1)
    zc = zlib.compress(orjson.dumps(data, option=_OPT), 1)
    head = orjson.dumps([made_at, len(a_rows), list(names), len(za), len(zb), len(zc)])
    return b"".join((MAGIC, struct.pack("<I", len(head)), head, off_a, off_b, za, zb, zc))


def decode(raw: bytes) -> list:
    """``[made_at, rows]`` of a stored list, the rows as JSON lists (``[item, score, [[source, rank, score, text,
    data], ...], [[name, value], ...]]``) whatever the writing: columns (:func:`_encode`), the JSON of
    :func:`_encode_v1`, or that JSON uncompressed (stored before compression)."""
    if raw[:4] == MAGIC:
        lst = StoredListV2(raw)
        return [lst.made_at, [[item, score, [[src, rank, cs, text, [list(kv) for kv in data]]
                                              for src, rank, cs, text, data in hits], [list(f) for f in feats]]
                              for item, score, hits, feats in lst.rows]]
    return orjson.loads(raw if raw[:1] == b"[" else zlib.decompress(raw))


def _row(raw: list) -> tuple:
    """One row's JSON lists back into the packed row's tuples."""
    item, score, hits, feats = raw
    return (item, score, tuple((s, r, c, t, tuple(tuple(kv) for kv in d)) for s, r, c, t, d in hits),
            tuple(tuple(kv) for kv in feats))


def _rows(raw: list) -> tuple:
    """JSON lists back into the packed rows' tuples."""
    return tuple(_row(r) for r in raw)


#: where one row of a stored list ends and the next begins in orjson's compact writing: ``],[`` and then the next
#: row's item (a number). The same bytes inside a reason's text or deeper in a row are no row boundary, but then
#: the JSON up to them is not whole (an open string or bracket), so they are never taken for rows
#: (:meth:`StoredList._parse`)
_ROW_END = re.compile(rb"\],\[(?=-?[0-9])")
_BLANK = rb"[ \t\n\r]*"
#: ``[made_at, [``: the stored list's time and the opening of its rows
_START = re.compile(_BLANK + rb"\[" + _BLANK + rb"(-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)" + _BLANK + rb"," + _BLANK
                    + rb"\[" + _BLANK)
#: bytes of a stored list decompressed on its first read: about 40 rows of a communities list (the head a request
#: reads is k + 5 rows of about 400 bytes)
FIRST_BYTES = 16_384
_ROW_BYTES = 1_024  # a generous guess at one row's length, for the bytes to decompress when more rows are asked for


def _prefix(raw: bytes, n: int) -> tuple[bytes, bool]:
    """The first ``n`` bytes (at least) of a stored list's JSON, and whether that is all of it."""
    if raw[:1] == b"[":  # stored before compression
        return raw, True
    d = zlib.decompressobj()
    out = d.decompress(raw, n)
    if d.eof:
        return out, True
    if len(out) < n:  # the stream ends before its end mark
        raise ValueError("stored list: truncated")
    return out, False


def _unpack_light(row: list | tuple) -> tuple[Merged, float]:
    """A light row (``[item, score, hits, features]``) as a candidate whose hits are read from the row
    (:class:`PackedMerged`; their reason :data:`UNEXPLAINED`, as :meth:`Packed.light` gives), and its score."""
    item, score, hits, features = row
    return PackedMerged(item, hits, dict(features), UNEXPLAINED), score


class StoredList(Packed):
    """A stored list (the bytes of :func:`_encode`) read only as far as a request reads: its head is decompressed
    (:data:`FIRST_BYTES`), the rows a request asks for (:meth:`light`, :meth:`head`, :meth:`reasons`) are cut at
    their boundaries (:data:`_ROW_END`) and parsed by one ``orjson`` call, and kept as parsed (*light* rows:
    lists; answers read each hit's source, rank, score and text, never the reasons' data). A writing whose rows
    cannot be cut so (blanks between tokens, say) is parsed whole, as is anything that needs the whole list or the
    reasons' data: its length, iteration, :attr:`rows`, :meth:`full`. Those rows are the ones :func:`decode` gives,
    as tuples. The compressed bytes are kept (the rest of the list is read from them); the decompressed head only
    until the first read."""

    __slots__ = ("_raw", "_head", "_light", "_index", "_pos", "_full", "made_at")

    def __init__(self, raw: bytes) -> None:  # noqa: D107 - see the class
        text, whole = _prefix(raw, FIRST_BYTES)
        start = _START.match(text)
        if start is None:
            raise ValueError("stored list: not [made_at, [rows]] with a number made_at")
        self.made_at = float(start.group(1))
        self._raw = raw
        self._light: list[list] = []
        self._index: dict[int, int] = {}
        self._full: tuple | None = None
        self._pos = start.end()  # where the next row starts in the JSON; -1: every row is parsed
        self._head: tuple[bytes, bool] | None = (text, whole)
        if text[self._pos:self._pos + 1] == b"]":
            self._pos, self._head = -1, None

    def _add(self, rows: list) -> None:
        """Keep ``rows`` (``orjson``'s lists, as parsed: ``[item, score, hits, features]``, each hit
        ``[source, rank, score, text, data]``) as the light rows. Not copied into tuples: that copy was a third of a
        cold request's parse, and the objects a cached list keeps no longer lengthen full collections
        (:mod:`belong.serve.heap`)."""
        light, index = self._light, self._index
        start = len(light)
        light.extend(rows)
        for i, raw in enumerate(rows, start):
            index.setdefault(raw[0], i)

    def _parse(self, upto: int | None) -> None:
        """Parse rows until ``upto`` are (None: all of them)."""
        have = len(self._light)
        if self._pos < 0 or (upto is not None and have >= upto):
            return
        if upto is not None:
            text, whole = self._head or (b"", False)
            self._head = None
            need, pos = upto - have, self._pos
            # the bytes at hand first (the head holds ~40 rows): decompressing the guess's worth again cost a
            # second decompression on every cold request
            size = len(text) if text else max(FIRST_BYTES, pos + need * _ROW_BYTES)
            while True:
                if len(text) < size and not whole:
                    text, whole = _prefix(self._raw, size)
                ends = [m.start() for _, m in zip(range(need), _ROW_END.finditer(text, pos), strict=False)]
                if len(ends) == need:
                    try:
                        rows = orjson.loads(b"[" + text[pos:ends[-1] + 1] + b"]")
                    except orjson.JSONDecodeError:
                        break  # a "],[" that is no boundary: the whole list is parsed instead
                    if len(rows) != need:
                        break
                    self._add(rows)
                    self._pos = ends[-1] + 2
                    return
                if whole:  # the list ends before: parsed whole
                    break
                size *= 2
        rows = decode(self._raw)[1]
        if not isinstance(rows, list):
            raise ValueError("stored list: the rows are not a list")
        self._add(rows[have:])
        self._pos = -1

    def _rows_all(self) -> tuple:
        """The packed rows, reasons' data and all (the whole list decoded once)."""
        if self._full is None:
            self._full = _rows(decode(self._raw)[1])
        return self._full

    @property
    def rows(self) -> tuple:  # type: ignore[override]  # a slot of Packed, computed here (read-only)
        return self._rows_all()

    def __len__(self) -> int:
        self._parse(None)
        return len(self._light)

    def light(self, start: int, stop: int) -> list[tuple]:
        self._parse(stop)
        return [_unpack_light(r) for r in self._light[start:stop]]

    def head(self, n: int) -> list[int]:
        self._parse(n)
        return [r[0] for r in self._light[:n]]

    def _find(self, item: int) -> int | None:
        i = self._index.get(item)
        if i is None and self._pos >= 0:
            self._parse(None)
            i = self._index.get(item)
        return i

    def full(self, item: int) -> Merged | None:
        i = self._find(item)
        return None if i is None else _unpack_one(self._rows_all()[i])[0]

    def reasons(self, item: int) -> dict[str, tuple[int, str]] | None:
        i = self._find(item)
        return None if i is None else {h[0]: (h[1], h[3]) for h in self._light[i][2]}


class _Section:
    """One zlib section of a stored list in columns, decompressed only as far as it is read."""

    __slots__ = ("_raw", "_z", "buf")

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._z: Any = None
        self.buf = b""

    def upto(self, size: int | None) -> bytes:
        """The section with at least its first ``size`` bytes decompressed (None: all of them)."""
        if size is not None and len(self.buf) >= size:
            return self.buf
        if self._z is None:
            self._z = zlib.decompressobj()
            self.buf = self._z.decompress(self._raw, size or 0)
        while (size is None or len(self.buf) < size) and not self._z.eof:
            more = self._z.decompress(self._z.unconsumed_tail, 0 if size is None else size - len(self.buf))
            if not more and not self._z.unconsumed_tail:
                raise ValueError("stored list: a truncated section")
            self.buf += more
        if size is not None and len(self.buf) < size:
            raise ValueError("stored list: a section shorter than its offsets say")
        return self.buf


class FlatMerged(PackedMerged):
    """A :class:`PackedMerged` over a row of a list in columns: its hits ``[source index, rank, score, ...]`` with
    the list's ``names``, made into the packed form only when asked for (rules and selection seldom do)."""

    __slots__ = ("_flat", "_names")

    def __init__(self, item: int, flat: list, names: list[str], features: dict[str, float],  # noqa: D107
                 reason: Reason) -> None:
        self.item, self._flat, self._names, self.features, self._reason = item, flat, names, features, reason

    @property  # a slot of PackedMerged, computed here
    def _rows(self) -> tuple:  # type: ignore[override]
        f, names = self._flat, self._names
        return tuple([(names[f[i]], f[i + 1], f[i + 2]) for i in range(0, len(f), 3)])

    def __reduce__(self) -> tuple:
        return FlatMerged, (self.item, self._flat, self._names, self.features, self._reason)


class StoredListV2(Packed):
    """A stored list in columns (:func:`_encode`), read only as far as a request reads: the head's rows of section
    A (what rules, selection and hydration read) when asked for (:meth:`light`, :meth:`head`), the reason texts of
    the rows read so far from section B when an explanation asks (:meth:`reasons`), and everything, the reasons'
    data too, only for :attr:`rows` and :meth:`full` (debug and why-not). Its length is in the header."""

    __slots__ = ("made_at", "_n", "_names", "_raw", "_offs", "_a", "_b", "_c", "_light", "_index", "_texts",
                 "_full")

    def __init__(self, raw: bytes) -> None:  # noqa: D107 - see the class
        if raw[:4] != MAGIC or len(raw) < 8:
            raise ValueError("stored list: not a list in columns")
        (size,) = struct.unpack_from("<I", raw, 4)
        head = orjson.loads(raw[8:8 + size])
        if not (isinstance(head, list) and len(head) == 6 and isinstance(head[0], (int, float))
                and isinstance(head[2], list) and all(type(x) is int and x >= 0 for x in (head[1], *head[3:]))):
            raise ValueError("stored list: a damaged header")
        self.made_at = float(head[0])
        n = self._n = head[1]
        self._names = head[2]
        self._offs = 8 + size  # offsets of A, then of B
        a0 = self._offs + 8 * (n + 1)
        b0, c0 = a0 + head[3], a0 + head[3] + head[4]
        if c0 + head[5] != len(raw):
            raise ValueError("stored list: the sections' lengths do not add up")
        self._raw = raw
        self._a, self._b, self._c = _Section(raw[a0:b0]), _Section(raw[b0:c0]), _Section(raw[c0:])
        self._light: list[list] = []  # rows of A parsed so far (from the first), as parsed
        self._index: dict[int, int] = {}
        #: rows of B parsed so far (from the first): ``[texts]``, or ``[texts, order, shown]`` when explained
        self._texts: list[list] = []
        self._full: tuple | None = None

    def _parts(self, section: _Section, which: int, start: int, stop: int) -> list:
        """Rows ``start:stop`` of section A (``which`` 0) or B (1), parsed by one ``orjson`` call."""
        base = self._offs + 4 * (self._n + 1) * which
        (a,) = struct.unpack_from("<i", self._raw, base + 4 * start)
        (b,) = struct.unpack_from("<i", self._raw, base + 4 * stop)
        rows = orjson.loads(b"[" + section.upto(b - 1)[a:b - 1] + b"]")
        if len(rows) != stop - start:
            raise ValueError("stored list: rows do not match their offsets")
        return rows

    def _parse(self, upto: int) -> None:
        have = len(self._light)
        upto = min(upto, self._n)
        if upto <= have:
            return
        rows = self._parts(self._a, 0, have, upto)
        index = self._index
        for i, row in enumerate(rows, have):
            index.setdefault(row[0], i)
        self._light.extend(rows)

    def __len__(self) -> int:
        return self._n

    def light(self, start: int, stop: int) -> list[tuple]:
        self._parse(stop)
        names, unexplained = self._names, UNEXPLAINED
        return [(FlatMerged(item, flat, names, {names[f[i]]: f[i + 1] for i in range(0, len(f), 2)}, unexplained),
                 score) for item, score, flat, f in self._light[start:stop]]

    def head(self, n: int) -> list[int]:
        self._parse(n)
        return [r[0] for r in self._light[:n]]

    def _find(self, item: int) -> int | None:
        i = self._index.get(item)
        if i is None and len(self._light) < self._n:
            self._parse(self._n)
            i = self._index.get(item)
        return i

    def _b_row(self, i: int) -> list:
        have = len(self._texts)
        if i >= have:  # the texts of every row parsed so far (an answer explains rows of its head), at once
            self._texts.extend(self._parts(self._b, 1, have, max(i + 1, len(self._light))))
        return self._texts[i]

    def reasons(self, item: int) -> dict[str, tuple[int, str]] | None:
        i = self._find(item)
        if i is None:
            return None
        f, names, texts = self._light[i][2], self._names, self._b_row(i)[0]
        return {names[f[3 * j]]: (f[3 * j + 1], text) for j, text in enumerate(texts)}

    def explained(self, item: int) -> tuple[tuple[str, ...], tuple[str, ...], str] | None:
        i = self._index.get(item)  # an answer explains rows it has read
        if i is None:
            return None
        row = self._b_row(i)
        if len(row) < 3:
            return None
        f, names, texts = self._light[i][2], self._names, row[0]
        sources = tuple([names[f[3 * j]] for j in row[1]])
        return sources, tuple([x for j in row[1] for x in (names[f[3 * j]], texts[j])]), row[2]

    @property
    def rows(self) -> tuple:  # type: ignore[override]  # a slot of Packed, computed here (read-only)
        if self._full is None:
            self._parse(self._n)
            names = self._names
            texts = [row[0] for row in self._parts(self._b, 1, 0, self._n)] if self._n else []
            data = orjson.loads(self._c.upto(None))
            if len(data) != self._n:
                raise ValueError("stored list: sections of different lengths")
            self._full = tuple(
                (item, score, tuple((names[f[3 * j]], f[3 * j + 1], f[3 * j + 2], text, tuple(tuple(kv) for kv in d))
                                    for j, (text, d) in enumerate(zip(t, ds, strict=True))),
                 tuple((names[g[i]], g[i + 1]) for i in range(0, len(g), 2)))
                for (item, score, f, g), t, ds in zip(self._light, texts, data, strict=True))
        return self._full

    def full(self, item: int) -> Merged | None:
        i = self._find(item)
        return None if i is None else _unpack_one(self.rows[i])[0]


def stored_list(raw: bytes) -> StoredList | StoredListV2:
    """A stored list read lazily, whichever writing it is in (columns, or the JSON of :func:`_encode_v1`)."""
    return StoredListV2(raw) if raw[:4] == MAGIC else StoredList(raw)


class PrecomputedLists:
    """Stored candidate lists in Redis (see the module docstring)."""

    def __init__(self, client: Any, prefix: str = DEFAULT_PREFIX, max_age_s: float = DEFAULT_MAX_AGE_S,
                 registry: CollectorRegistry | None = None, getter: AsyncGetter | None = None,
                 refresh: str = "inline") -> None:
        if refresh not in REFRESH_MODES:
            raise ValidationError("BELONG_PRECOMPUTED_REFRESH", f"must be one of {', '.join(REFRESH_MODES)}, got "
                                  f"{refresh!r}")
        self.client = client
        self.refresh = refresh  # who refreshes a stale list: see REFRESH_MODES
        self.getter = getter  # the cold path's non-blocking reads (None: the synchronous client's)
        self.prefix = prefix
        self.max_age_s = max_age_s
        self.counts = {"hit": 0, "stale": 0, "miss": 0, "expired": 0, "error": 0}
        self.ages: list[float] = []  # of the lists served (the last 10,000)
        self.forgotten: dict[str, set[int]] = {}  # by version: people forgotten (never served from a stored list)
        #: by version: when each (surface, person)'s lists were last made stale by their events (unix seconds); a
        #: list made before is stale. Read from Redis on a version's first use (:meth:`_marks`)
        self.stale: dict[str, dict[tuple[Surface, str], float]] = {}
        self._total = Counter("belong_precomputed", "Cold-path reads of precomputed candidate lists", ["result"],
                              registry=registry)
        self._age = Histogram("belong_precomputed_age_seconds", "Age of the precomputed lists served",
                              buckets=_AGE_BUCKETS, registry=registry)

    @classmethod
    def open(cls, url: str, prefix: str = DEFAULT_PREFIX, max_age_s: float = DEFAULT_MAX_AGE_S,
             registry: CollectorRegistry | None = None, refresh: str = "inline") -> PrecomputedLists:
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=0.05, socket_connect_timeout=1.0), prefix, max_age_s,
                   registry, AsyncGetter(url, timeout_s=0.05) if supports(url) else None, refresh)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None,
                 registry: CollectorRegistry | None = None) -> PrecomputedLists | None:
        """The configured store (None when ``BELONG_PRECOMPUTED_REDIS`` is unset)."""
        env = dict(os.environ if env is None else env)
        url = env.get("BELONG_PRECOMPUTED_REDIS") or ""
        if not url:
            return None
        raw = env.get("BELONG_PRECOMPUTED_MAX_AGE_S") or str(DEFAULT_MAX_AGE_S)
        try:
            max_age = float(raw)
        except ValueError:
            raise ValidationError("BELONG_PRECOMPUTED_MAX_AGE_S", f"must be a number of seconds, got {raw!r}") from None
        if max_age <= 0:
            raise ValidationError("BELONG_PRECOMPUTED_MAX_AGE_S", f"must be > 0, got {raw!r}")
        return cls.open(url, env.get("BELONG_PRECOMPUTED_PREFIX") or DEFAULT_PREFIX, max_age, registry,
                        env.get("BELONG_PRECOMPUTED_REFRESH") or "inline")

    def key(self, version: str, surface: Surface, user: str) -> str:
        return f"{self.prefix}{version}:{SURFACE_NAME[surface]}:{user}"

    def stale_key(self, version: str) -> str:
        """The sorted set of the version's stale lists: member ``surface:user``, score the time it was marked."""
        return f"{self.prefix}{version}:stale"

    def _marks(self, version: str) -> dict[tuple[Surface, str], float]:
        """The version's stale marks, read from Redis on first use (those other processes made, before this one
        started)."""
        marks = self.stale.get(version)
        if marks is None:
            marks = self.stale[version] = {}
            by_name = {name: s for s, name in SURFACE_NAME.items()}
            try:
                for member, score in self.client.zrange(self.stale_key(version), 0, -1, withscores=True):
                    name, _, user = (member.decode() if isinstance(member, bytes) else member).partition(":")
                    if name in by_name:
                        key = (by_name[name], user)
                        marks[key] = max(marks.get(key, 0.0), float(score))
            except Exception as exc:  # noqa: BLE001 - this process's own marks still hold
                log.warning("stale marks of %s not read: %s", version, exc)
        return marks

    def _count(self, result: str) -> None:
        self.counts[result] += 1
        self._total.labels(result).inc()

    # ------------------------------------------------------------------------------------------- the API
    def entry(self, version: str, surface: Surface, user: str) -> Entry | None:
        """The stored list of ``user`` as a cache entry, or None (none stored, too old, or Redis failing)."""
        try:
            raw = self.client.get(self.key(version, surface, user))
        except Exception:  # noqa: BLE001 - the live path answers instead
            self._count("error")
            return None
        return self._entry_of(raw, version, surface, user)

    async def entry_async(self, version: str, surface: Surface, user: str) -> Entry | None:
        """:meth:`entry` read without blocking the event loop (:mod:`belong.serve.redis_get`) when the URL allows."""
        if self.getter is None:
            return self.entry(version, surface, user)
        try:
            raw = await self.getter.get(self.key(version, surface, user))
        except Exception:  # noqa: BLE001 - the live path answers instead
            self._count("error")
            return None
        return self._entry_of(raw, version, surface, user)

    def _entry_of(self, raw: bytes | None, version: str, surface: Surface, user: str) -> Entry | None:
        if raw is None:
            self._count("miss")
            return None
        try:
            stored = stored_list(raw)
        except (zlib.error, UnicodeDecodeError, ValueError, struct.error):  # JSONDecodeError is a ValueError
            self._count("error")  # a damaged value: the live path answers instead
            return None
        age = max(0.0, time.time() - stored.made_at)
        if age > self.max_age_s:
            self._count("expired")
            return None
        stale = self._marks(version).get((surface, user), 0.0) > stored.made_at
        self._count("stale" if stale else "hit")
        self._age.observe(age)
        self.ages.append(age)
        if len(self.ages) > 10_000:
            del self.ages[:5_000]
        packed: Packed = stored
        gone = self.forgotten.get(version) if surface is Surface.PEOPLE else None
        if gone:
            packed = Packed([])
            packed.rows = tuple(r for r in stored.rows if r[0] not in gone)
        # refreshed here: a stale list is a cache entry already past its time (the engine answers with it and runs
        # the live path in the background); refreshed by the job: an ordinary entry, marked stale
        out = Entry(version, -math.inf if stale and self.refresh == "inline" else time.monotonic(), packed)
        out.stale = stale
        return out

    def put(self, version: str, surface: Surface, user: str, made: Candidates, made_at: float | None = None,
            explain: Explainer | None = None) -> None:
        """Store a live run's list (a refresh after the person's own events); failures only log. ``made_at``: when
        the run started (unix seconds; default now): an event marked after it leaves the new list stale.
        ``explain``: the pipeline's, to store each row's explanation (:func:`_encode`)."""
        made_at = time.time() if made_at is None else made_at
        try:
            self.client.set(self.key(version, surface, user), _encode(made_at, Packed(made.ranked).rows, explain))
        except Exception as exc:  # noqa: BLE001 - the answer does not depend on it
            log.warning("precomputed list not stored: %s", exc)
            return
        marks = self._marks(version)
        if marks.get((surface, user), math.inf) <= made_at:  # refreshed: the mark is spent
            del marks[(surface, user)]
            try:
                self.client.zrem(self.stale_key(version), f"{SURFACE_NAME[surface]}:{user}")
            except Exception as exc:  # noqa: BLE001 - a spent mark left in Redis changes nothing (the list is newer)
                log.warning("stale mark not removed: %s", exc)

    def mark_stale(self, events: Iterable[Event], version: str) -> int:
        """Mark the stored lists that ``events`` make stale (:func:`~belong.serve.cache.dropped_lists`), here and in
        Redis; how many."""
        now = time.time()
        marks = self._marks(version)
        named: dict[str, float] = {}
        for e in events:
            for surface, user in dropped_lists(e):
                marks[(surface, user)] = now
                named[f"{SURFACE_NAME[surface]}:{user}"] = now
        if named:
            try:
                self.client.zadd(self.stale_key(version), named)
            except Exception as exc:  # noqa: BLE001 - this process still knows; others see them stale by age
                log.warning("stale marks not stored: %s", exc)
        return len(named)

    def forget_users(self, version: str, user_ids: list[str], people: set[int]) -> None:
        """Forgotten users (``DELETE /v1/users/{id}``): their stored lists are deleted, and their indices
        ``people`` are dropped from every stored people list read from now on."""
        self.forgotten.setdefault(version, set()).update(people)
        keys = [self.key(version, s, u) for u in user_ids for s in Surface]
        if keys:
            try:
                self.client.delete(*keys)
            except Exception as exc:  # noqa: BLE001 - the rows of a forgotten user are refused on read anyway
                log.warning("stored lists of forgotten users not deleted: %s", exc)

    def close(self) -> None:
        if self.getter is not None:
            self.getter.close()

    def report(self, version: str | None) -> dict[str, Any]:
        """For ``/readyz``: reads by result, share served from precompute, ages of the lists served, the job's
        metadata for ``version``."""
        n = sum(self.counts.values())
        ages = sorted(self.ages)
        meta = None
        if version is not None:
            try:
                raw = self.client.get(f"{self.prefix}{version}:meta")
                meta = orjson.loads(raw) if raw else None
            except Exception:  # noqa: BLE001 - reported as unknown
                meta = None
        return {"reads": dict(self.counts),
                "share_served": round((self.counts["hit"] + self.counts["stale"]) / n, 4) if n else None,
                "marked_stale": len(self.stale.get(version, {})) if version is not None else None,
                "age_s_p50": round(ages[len(ages) // 2], 1) if ages else None,
                "age_s_max": round(ages[-1], 1) if ages else None, "max_age_s": self.max_age_s, "job": meta}


# ----------------------------------------------------------------------------------------------- the batch job
def precompute(store: str | Path, redis_url: str, *, models_dir: str | Path | None = None,
               prefix: str = DEFAULT_PREFIX, surfaces: list[Surface] | None = None, limit: int | None = None,
               depth: int = 200, batch: int = 500, users: Iterable[str] | None = None,
               progress: Callable[[int, int], None] | None = None, stale: bool = False) -> dict[str, Any]:
    """Run the candidate stage of each surface of the newest artifact for every user of the store and store the
    lists; returns the job's figures (also stored as ``PREFIX<version>:meta``).

    ``users``: only these people (the day's active ones, say; each must be a known, active person of the store).
    ``stale``: only the people with a list marked stale by their own events (the refresh of
    ``BELONG_PRECOMPUTED_REFRESH=job``); their marks are spent once the lists are stored. Every list is dated when the
    state was read, so an event that comes after leaves the person's list stale.
    The state is read from the snapshot beside the artifacts when there is one (as ``belong serve --models``
    starts), else from the whole log."""
    import redis

    from belong.serve.versions import load_version
    from belong.training.locate import artifact_versions, snapshot_dir

    models = Path(models_dir) if models_dir else Path(str(store)) / "models"
    known = artifact_versions(models) if models.is_dir() else []
    if not known:
        raise ValidationError("models", f"no belong train artifact under {models} (the lists are versioned with the "
                              "model the API serves: run belong train first)")
    if stale and users is not None:
        raise ValidationError("stale", "give the people named or --stale, not both")
    # every list is dated when the state was read: an event marked after that (not in this state) leaves it stale
    state_read_at = time.time()
    t0 = time.perf_counter()
    model = load_version(store, models / known[-1], None, snapshot=snapshot_dir(models))
    load_s = time.perf_counter() - t0
    state = model.state
    active = [u for u, status in zip(state.users.ids, state.users.status, strict=True)
              if status == EntityStatus.ACTIVE.value]  # every active person
    client = redis.Redis.from_url(redis_url)
    lists = PrecomputedLists(client, prefix)
    if stale:  # the people whose own events (folded into the state just read) marked a list of theirs
        known_active = set(active)
        marked: list[bytes] = client.zrangebyscore(lists.stale_key(model.version), "-inf", state_read_at)  # type: ignore[assignment]
        users = [u for u in dict.fromkeys(bytes(m).decode().partition(":")[2] for m in marked) if u in known_active]
    if users is not None:
        wanted = list(dict.fromkeys(users))
        known_active = set(active)
        if bad := [u for u in wanted if u not in known_active]:
            raise ValidationError("users", f"{len(bad)} not active people of the store, e.g. {bad[:3]}")
        active = wanted
    people = active[:limit] if limit is not None else active
    chosen = surfaces or list(model.pipelines)
    total, done, t1, c1 = len(people) * len(chosen), 0, time.perf_counter(), time.process_time()
    per_surface: dict[str, float] = {}
    for surface in chosen:
        pipeline = model.pipelines[surface]
        ts = time.perf_counter()
        pipe = client.pipeline(transaction=False)
        for user in people:
            made = pipeline.candidates(Request(user, surface, k=20), depth=depth)
            pipe.set(lists.key(model.version, surface, user),
                     _encode(state_read_at, Packed(made.ranked).rows, pipeline.explain))
            done += 1
            if done % batch == 0:
                pipe.execute()
                if progress:
                    progress(done, total)
        pipe.execute()
        per_surface[SURFACE_NAME[surface]] = round(time.perf_counter() - ts, 2)
    if progress:
        progress(done, total)
    run_s = time.perf_counter() - t1
    if stale:  # spent: a mark made since (a newer event) scores above the state's time and stays
        client.zremrangebyscore(lists.stale_key(model.version), "-inf", state_read_at)
    meta = {"version": model.version, "made_at": time.time(), "users": len(people),
            "surfaces": [SURFACE_NAME[s] for s in chosen], "lists": done, "load_seconds": round(load_s, 1),
            "seconds": round(run_s, 1), "cpu_seconds": round(time.process_time() - c1, 1),
            "seconds_per_surface": per_surface, "ms_per_list": round(run_s / max(done, 1) * 1e3, 3),
            "scope": "the lists marked stale" if stale else "every active person" if users is None
            else "the people named", "state_read_at": state_read_at}
    client.set(f"{prefix}{model.version}:meta", orjson.dumps(meta))
    return meta
