"""A stored candidate list read row by row (issue 14: parsing all 200 rows of every stored list was most of the
cold path's CPU under ``bench serve --traffic zipf``), in both writings: the columns written now
(:class:`belong.serve.precomputed.StoredListV2`) and the JSON written before (:class:`StoredList`, still read):
the same rows, answers and explanations as the whole list decoded at once, with only the head a request reads
parsed."""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import os
import secrets
import time
import zlib
from pathlib import Path

import orjson
import pytest

from belong.domain import Surface
from belong.pipeline.types import Candidate, ListMemo, Merged, PackedMerged, RankedList, Reason, Request
from belong.serve.cache import UNEXPLAINED, Packed
from belong.serve.engine import Engine
from belong.serve.feature_reader import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.precomputed import (
    MAGIC,
    FlatMerged,
    PrecomputedLists,
    StoredList,
    StoredListV2,
    _encode,
    _encode_v1,
    _rows,
    decode,
    stored_list,
)
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, ModelVersion, build_version

REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")
#: both writings of a stored list and the class that reads each lazily
WRITINGS = pytest.mark.parametrize("encode,reader", [(_encode, StoredListV2), (_encode_v1, StoredList)],
                                   ids=["columns", "json"])


@pytest.fixture(scope="module")
def model(small_store: Path) -> ModelVersion:
    return build_version(str(small_store))


def _whole(raw: bytes) -> Packed:
    """The list as the cold path read it before: every row decoded at once."""
    packed = Packed([])
    packed.rows = _rows(decode(raw)[1])
    return packed


def _stored(model: ModelVersion, n: int = 40, encode=_encode) -> list[tuple[Request, bytes]]:
    pipe = model.pipelines[Surface.COMMUNITIES]
    out = []
    for u in model.state.users.ids[:n]:
        request = Request(u, Surface.COMMUNITIES, k=10)
        made = pipe.candidates(request, depth=200)
        out.append((request, encode(time.time(), Packed(made.ranked).rows)))
    return out


@WRITINGS
def test_the_rows_are_those_of_the_whole_decode(model: ModelVersion, encode, reader) -> None:
    for _request, raw in _stored(model, encode=encode):
        whole = _whole(raw)
        lazy = reader(raw)
        assert type(stored_list(raw)) is reader
        assert lazy.head(7) == whole.head(7)
        assert lazy.light(3, 12) == whole.light(3, 12)
        for item in whole.head(5):
            assert lazy.full(item) == whole.full(item)
        assert lazy.full(-1) is None  # not in the list: the rest is parsed to say so
        assert lazy.rows == whole.rows and len(lazy) == len(whole) and list(lazy) == list(whole)
        assert lazy.made_at == decode(raw)[0]
        if whole.rows:
            first = whole.rows[0][0]
            assert reader(raw).without(first).rows == whole.without(first).rows


def test_both_writings_decode_to_the_same_rows(model: ModelVersion) -> None:
    """The same packed rows written as columns and as JSON: the same ``decode`` (what the Ray bench compares),
    the same rows, and columns are not much larger."""
    for _request, raw in _stored(model, 20, _encode_v1):
        made_at, rows = decode(raw)
        cols = _encode(made_at, _rows(rows))
        assert cols[:4] == MAGIC and decode(cols) == decode(raw)
        assert StoredListV2(cols).rows == StoredList(raw).rows
        assert len(cols) < 1.3 * len(raw) + 200


@WRITINGS
def test_a_request_parses_only_the_head_it_reads(model: ModelVersion, encode, reader) -> None:
    pipe = model.pipelines[Surface.COMMUNITIES]
    request, raw = max(_stored(model, encode=encode), key=lambda x: len(_whole(x[1])))
    n = len(_whole(raw))
    assert n > 40
    lazy = reader(raw)
    memo = ListMemo()
    done = pipe.finish(request, lazy, memo=memo)
    assert done.items and len(lazy._light) < n  # the tail is still unparsed bytes
    if reader is StoredList:
        assert lazy._pos >= 0
    else:  # neither the reasons' data nor the texts past the rows read were decompressed
        assert lazy._c._z is None and len(lazy._texts) <= len(lazy._light) and lazy._full is None
    # what the cache keeps of the answer: one object per candidate, explanations the collector stops tracking
    assert memo.kept and all(type(m) is (PackedMerged if reader is StoredList else FlatMerged) for m in memo.kept)
    for _ in range(2):  # a tuple is let go in the pass after the tuples in it were (one level: two passes at most)
        gc.collect()
    assert memo.explained and not any(gc.is_tracked(how) for how in memo.explained.values())
    again = pipe.finish(request, lazy, memo=memo)
    assert again.items == done.items  # the memoised answer


@WRITINGS
def test_answers_on_the_stored_list_equal_those_on_the_whole_list(model: ModelVersion, encode, reader) -> None:
    pipe = model.pipelines[Surface.COMMUNITIES]
    compared = 0
    for request, raw in _stored(model, encode=encode):
        lazy, whole = reader(raw), _whole(raw)
        a = pipe.finish(request, lazy, memo=ListMemo())
        b = pipe.finish(request, whole, memo=ListMemo())
        assert a.items == b.items and a.removed == b.removed and a.hydration == b.hydration
        all_a = pipe.finish(request, reader(raw), all_rules=True)  # debug: every rule over the whole list
        all_b = pipe.finish(request, whole, all_rules=True)
        assert all_a.items == all_b.items and all_a.removed == all_b.removed
        compared += bool(a.items)
    assert compared >= 20


@WRITINGS
def test_light_candidates_equal_unpacked_ones_and_are_one_object_each(model: ModelVersion, encode, reader) -> None:
    """A stored list's light candidates (:class:`PackedMerged`: hits read from the packed row; :class:`FlatMerged`
    from a row in columns) equal the :class:`Merged` of the packed rows, compare both ways, and keep no per-source
    objects."""
    kind = PackedMerged if reader is StoredList else FlatMerged
    for _request, raw in _stored(model, 10, encode):
        lazy, whole = reader(raw).light(0, 30), _whole(raw).light(0, 30)
        assert lazy == whole and whole == lazy
        for (a, sa), (b, sb) in zip(lazy, whole, strict=True):
            assert type(a) is kind and sa == sb and a == b and not (a != b)
            assert list(a.hits) == list(b.hits) and dict(a.hits) == b.hits and a.sources == b.sources
            assert all(s in a.hits and a.hits[s] == b.hits[s] for s in b.hits) and "nope" not in a.hits
            assert len(a.hits) == len(b.hits) and a.hits.get("nope") is None
            copied = Merged(a.item, a.hits, dict(a.features))  # what a writing selector makes of it
            assert copied == b
            for twin in (copy.copy(a), copy.deepcopy(a)):
                assert type(twin) is kind and twin == a and twin.hits == a.hits
    m = PackedMerged(3, (("pixie", 2, 0.5, "t"),), {}, UNEXPLAINED)
    assert m != PackedMerged(3, (("pixie", 1, 0.5, "t"),), {}, UNEXPLAINED) and m != 3
    assert m.hits["pixie"] == (2, Candidate(3, "pixie", 0.5, UNEXPLAINED))
    with pytest.raises(KeyError):
        m.hits["trending"]  # noqa: B018 - the lookup is the point
    with pytest.raises(AttributeError):
        m.hits = {}  # type: ignore[misc]  # read-only
    m.features["members"] = 3.0
    for twin in (copy.copy(m), copy.deepcopy(m)):
        assert type(twin) is PackedMerged and twin == m and twin.hits == m.hits
    assert copy.copy(m).features is m.features and copy.deepcopy(m).features is not m.features


@WRITINGS
def test_reasons_are_those_of_the_full_rows(model: ModelVersion, encode, reader) -> None:
    """``reasons`` (what explanations read) agree on every form of a list, and explaining from them gives the
    explanation of the fully unpacked candidate."""
    pipe = model.pipelines[Surface.COMMUNITIES]
    for _request, raw in _stored(model, 10, encode):
        whole = _whole(raw)
        plain = RankedList(whole[0:len(whole)])
        lazy = reader(raw)
        for item in whole.head(30):
            full = whole.full(item)
            assert full is not None
            expected = {s: (r, c.reason.text) for s, (r, c) in full.hits.items()}
            assert lazy.reasons(item) == whole.reasons(item) == plain.reasons(item) == expected
            light = next(m for m, _ in lazy.light(0, 30) if m.item == item)
            assert pipe.explain(light, lazy.reasons(item)) == pipe.explain(full)
        assert lazy.reasons(-1) is None and whole.reasons(-1) is None and plain.reasons(-1) is None
    m = Merged(1, {"pixie": (0, Candidate(1, "pixie", 1.0, Reason("walks land here")))})
    assert pipe.explain(m).text == "walks land here"  # no reasons given: the candidate's own


def test_rows_cut_where_a_text_looks_like_a_boundary_read_the_same() -> None:
    """``],[`` and a digit inside a reason's text, or deeper in a row, are no row boundary: the rows read are still
    the stored ones (the cut that does not parse is not taken)."""
    tricky = "a [1],[2 text"
    rows = tuple((i, 1.0 / (i + 1), (("pixie", i, 0.5, tricky if i % 3 == 0 else "plain", (("ids", (1, 2)),)),
                                    ("trending", 0, 0.25, "x],[7", (("pairs", ((1, 2), (3, 4))),))),
                  (("members", float(i)),)) for i in range(60))
    raw = _encode_v1(5.0, rows)
    for n in (1, 2, 7, 25, 59, 60, 61):
        lazy = StoredList(raw)
        assert lazy.head(n) == [r[0] for r in rows[:n]]
        assert lazy.light(0, n) == _whole(raw).light(0, n)
        assert lazy.reasons(rows[0][0]) == {"pixie": (0, tricky), "trending": (0, "x],[7")}
        assert lazy.rows == _rows(decode(raw)[1]) and lazy.head(60) == [r[0] for r in rows]
    many = tuple((i, 0.5, (("pixie", i, 0.5, "t" * 900, ()),), ()) for i in range(300))  # long rows: read on
    lazy = StoredList(_encode_v1(1.0, many))
    assert lazy.head(280) == list(range(280)) and lazy._pos >= 0  # beyond the first bytes, still not the tail
    assert lazy.light(290, 300) == _whole(_encode_v1(1.0, many)).light(290, 300)
    assert len(lazy) == 300 and lazy._pos < 0


def test_other_writings_of_the_same_json_read_too() -> None:
    rows = ((5, 0.5, (("pixie", 0, 0.25, "why, [not]", (("visits", 3),)),), (("members", 10.0),)),
            (7, 0.25, (), ()))
    plain = orjson.dumps([123.5, rows])
    spaced = json.dumps([123.5, rows], indent=1).encode()  # blanks between every token
    for raw in (plain, zlib.compress(plain, 1), spaced, zlib.compress(spaced, 1)):
        lazy = StoredList(raw)
        assert lazy.made_at == 123.5 and lazy.head(1) == [5] and lazy.rows == rows
    empty = StoredList(zlib.compress(orjson.dumps([1.0, []]), 1))
    assert len(empty) == 0 and empty.head(5) == [] and empty.light(0, 25) == [] and empty.full(5) is None
    for bad in (b"[1.0, {}]", b'["x", []]', b"[1.0 []]", zlib.compress(b"[1.0, [[5, 0.5, [], []]")):
        with pytest.raises(ValueError):
            StoredList(bad).rows  # noqa: B018 - parsing is the point


def test_explanations_made_when_stored_are_those_made_when_answering(model: ModelVersion) -> None:
    """A list stored with the pipeline's explanations (what the job and the refresh write) answers with the very
    explanations the live path makes, without making them; one stored without them makes them as before."""
    pipe = model.pipelines[Surface.COMMUNITIES]
    explained = 0
    for request, raw in _stored(model, 30):
        made_at, rows = decode(raw)
        with_e = _encode(made_at, _rows(rows), pipe.explain)
        assert decode(with_e) == decode(raw)  # the rows are the same
        lazy, whole = StoredListV2(with_e), _whole(raw)
        memo = ListMemo()
        a = pipe.finish(request, lazy, memo=memo)
        b = pipe.finish(request, whole, memo=ListMemo())
        assert a.items == b.items  # sources, reasons and sentence of every item, as explain() makes them
        for it in a.items:
            stored = lazy.explained(it.index)
            assert stored is not None and memo.explained[it.index] == stored
            assert stored[0] == it.sources and stored[2] == it.explanation
            assert dict(zip(stored[1][::2], stored[1][1::2], strict=True)) == it.reasons
            explained += 1
        plain = StoredListV2(raw)  # stored without them: made when answering
        assert all(plain.explained(m.item) is None for m, _ in plain.light(0, 30))
        assert lazy.explained(-1) is None and whole.explained(0) is None
    assert explained >= 100


def _with_header(raw: bytes, head: bytes) -> bytes:
    """``raw`` (a list in columns) with another JSON header."""
    size = int.from_bytes(raw[4:8], "little")
    return MAGIC + len(head).to_bytes(4, "little") + head + raw[8 + size:]


def test_columns_read_any_row_the_packed_form_holds() -> None:
    """Texts and data of any shape, rows without hits or features, long rows, an empty list: the columns read back
    the rows written, from any row first, and damage is a ValueError (the live path answers instead)."""
    tricky = 'a [1],[2 "text", \\ ünï'
    rows = tuple((i, 1.0 / (i + 1), (("pixie", i, 0.5, tricky if i % 3 == 0 else "plain", (("ids", (1, 2)),)),
                                    ("trending", 0, 0.25, "x],[7", (("pairs", ((1, 2), (3, 4))), ("s", "t")))),
                  (("members", float(i)), ("p_join", 0.125))) for i in range(60)) \
        + ((60, 0.0, (), ()), (61, -1.5, (("pixie", 3, 0.1, "t" * 5000, ()),), (("members", 1e300),)))
    raw = _encode(5.0, rows)
    expected = _rows(decode(_encode_v1(5.0, rows))[1])
    assert StoredListV2(raw).rows == expected and decode(raw) == decode(_encode_v1(5.0, rows))
    for n in (0, 1, 7, 25, 61, 62, 63):
        lazy = StoredListV2(raw)
        assert len(lazy) == 62 and lazy.head(n) == [r[0] for r in rows[:n]]
        assert lazy.light(0, n) == _whole(raw).light(0, n)
        assert lazy.reasons(61) == {"pixie": (3, "t" * 5000)} and lazy.reasons(60) == {}
        assert lazy.reasons(0) == {"pixie": (0, tricky), "trending": (0, "x],[7")}
        assert lazy.full(59) == _whole(raw).full(59) and lazy.full(-7) is None
    late = StoredListV2(raw)
    assert late.light(55, 62) == _whole(raw).light(55, 62)  # a slice first: the rows before it are parsed too
    empty = StoredListV2(_encode(1.0, ()))
    assert len(empty) == 0 and empty.head(5) == [] and empty.light(0, 25) == [] and empty.full(5) is None
    assert empty.rows == () and decode(_encode(1.0, ())) == [1.0, []]
    damaged = [raw[:-10], raw[:30], MAGIC + raw[4:8] + b"{" + raw[9:], raw[:-1] + bytes([raw[-1] ^ 0xFF]),
               MAGIC + b"\xff\xff\xff\x7f", raw + b"x", _with_header(raw, b'[5.0, 62, ["pixie"], "12", 1, 1]'),
               _with_header(raw, b'[5.0, -3, ["pixie"], 1, 1, 1]')]
    for bad in damaged:
        with pytest.raises((ValueError, zlib.error)):
            lst = StoredListV2(bad)
            lst.light(0, 62), lst.reasons(61), lst.rows  # noqa: B018 - parsing is the point


@pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")
def test_the_engine_answers_from_stored_lists_exactly_as_the_live_path(model: ModelVersion) -> None:
    """The whole cold path (Redis GET, rules, selection, hydration, explanations, JSON) on a stored list, against
    the live candidate run of the same state."""
    import redis

    assert REDIS_URL is not None
    prefix = f"belong:test:stored:{secrets.token_hex(4)}:"
    client = redis.Redis.from_url(REDIS_URL)
    lists = PrecomputedLists(client, prefix)
    stored = _stored(model, 30)
    for request, raw in stored:
        client.set(lists.key(model.version, Surface.COMMUNITIES, request.user_id), raw)
    client.set(lists.key(model.version, Surface.COMMUNITIES, "damaged"), b"x\x9cnot zlib")

    def engine(precomputed: PrecomputedLists | None) -> Engine:
        registry = ModelRegistry()
        registry.add(model, activate=True)
        features = FeatureReader.open(None, prefix="stored:", budget_ms=50, breaker_s=1)
        out = Engine(registry, features, Metrics(), ServeSettings().with_(budget_sources_ms=60_000))
        out.precomputed = precomputed
        return out

    def answer(e: Engine, user: str) -> tuple[str, list]:
        body = orjson.loads(asyncio.run(e.recommend(Surface.COMMUNITIES, user, 10)))
        return body["cache"], [(it["id"], it["score"], it["sources"], it["explanation"], it["features"])
                               for it in body["items"]]

    try:
        live, cold = engine(None), engine(lists)
        for request, _raw in stored:
            how, items = answer(cold, request.user_id)
            assert how == "precomputed"
            assert items == answer(live, request.user_id)[1], request.user_id
            assert answer(cold, request.user_id) == ("hit", items)  # then the cached entry answers the same
        assert lists.counts["hit"] == len(stored)
        assert lists.entry(model.version, Surface.COMMUNITIES, "damaged") is None and lists.counts["error"] == 1
    finally:
        for key in client.scan_iter(f"{prefix}*", count=1000):
            client.delete(key)
