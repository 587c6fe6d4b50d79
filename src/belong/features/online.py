"""Online feature store: entity rows by (entity, key), read for a whole request in one round trip.

Two backends with one interface and the same encoding (each value msgpack-encoded with msgspec):

* :class:`RedisFeatureStore` — one hash per entity, ``<prefix><entity>:<key>``, one field per feature plus
  ``_ts`` (the materialisation time). ``read_many`` sends one pipeline (``transaction=False``) of ``HMGET``s:
  one network round trip per request however many entities it names.
* :class:`InProcessFeatureStore` — a dict in this process; the default when no Redis is configured.

Missing entities and missing values read as the declared defaults; each returned row carries
``_materialized_at_us`` (None when the entity was never written) so callers can check ``freshness_s``.
"""

from __future__ import annotations

import abc
import collections
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from belong.errors import StoreError, ValidationError
from belong.features.registry import STORED_ENTITIES, FeatureSpec, get_spec, specs_for

MATERIALIZED_AT = "_materialized_at_us"
DEFAULT_PREFIX = "belong:features:"
_TS_FIELD = "_ts"
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode


def _type_ok(spec: FeatureSpec, value: Any) -> bool:
    if value is None:
        return spec.default is None
    if spec.dtype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if spec.dtype == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if spec.dtype == "str":
        return isinstance(value, str)
    if spec.dtype == "list":
        return isinstance(value, list | tuple)
    return isinstance(value, dict)


def _entity(entity: str) -> str:
    if entity not in STORED_ENTITIES:
        raise ValidationError("entity", f"must be one of {', '.join(STORED_ENTITIES)}; got {entity!r}")
    return entity


def _key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError("key", f"must be a non-empty string id, got {key!r}")
    return key


def encode_row(entity: str, row: Mapping[str, Any]) -> dict[str, bytes]:
    """Validate a row against the declarations (names, entity, types) and encode each value."""
    out = {}
    for name, value in row.items():
        spec = get_spec(name)
        if spec.entity != entity or spec.request_time:
            raise ValidationError("feature", f"{name!r} is not a stored feature of {entity!r}")
        if not _type_ok(spec, value):
            raise ValidationError(name, f"must be a {spec.dtype}, got {type(value).__name__}")
        out[name] = _encode(value)
    return out


def _names(entity: str, names: Sequence[str] | None) -> list[str]:
    """The feature names read for ``entity`` (validated once per distinct request; shared: do not mutate)."""
    key = (entity, None if names is None else tuple(names))
    hit = _NAMES.get(key)
    if hit is not None:
        return hit
    if names is None:
        out = [s.name for s in specs_for(entity)]  # type: ignore[arg-type]
    else:
        for n in names:
            if get_spec(n).entity != entity:
                raise ValidationError("feature", f"{n!r} is not a feature of {entity!r}")
        out = list(names)
    if len(_NAMES) < 1024:  # the serving path asks a handful of distinct ones
        _NAMES[key] = out
    return out


_NAMES: dict[tuple[str, tuple[str, ...] | None], list[str]] = {}


def _decode_row(entity: str, names: list[str], raw: Sequence[bytes | None], ts: bytes | None) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for n, v in zip(names, raw, strict=True):
        row[n] = get_spec(n).default_value() if v is None else _decode(v)
    row[MATERIALIZED_AT] = None if ts is None else int(ts)
    return row


def stale_features(row: Mapping[str, Any], now_us: int) -> list[str]:
    """Names in a row read from the store whose ``freshness_s`` is exceeded at ``now_us`` (every name when the
    entity was never materialised); request-time and zero-freshness features are never stale."""
    ts = row.get(MATERIALIZED_AT)
    names = [n for n in row if n != MATERIALIZED_AT]
    if ts is None:
        return names
    age_s = (now_us - ts) / 1_000_000
    return [n for n in names if (f := get_spec(n).freshness_s) > 0 and age_s > f]


class OnlineFeatureStore(abc.ABC):
    """Entity rows keyed by (entity, key); see the module docstring."""

    url: str

    def write(self, entity: str, rows: Mapping[str, Mapping[str, Any]], ts_us: int) -> int:
        """Replace the rows of ``entity`` for the given keys, stamped as materialised at ``ts_us``."""
        entity = _entity(entity)
        if isinstance(ts_us, bool) or not isinstance(ts_us, int) or ts_us < 0:
            raise ValidationError("ts_us", f"must be non-negative integer microseconds, got {ts_us!r}")
        encoded = {_key(k): encode_row(entity, r) for k, r in rows.items()}
        if encoded:
            self._write(entity, encoded, ts_us)
        return len(encoded)

    def read_many(
        self, requests: Sequence[tuple[str, str]], names: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    ) -> list[dict[str, Any]]:
        """Rows for each (entity, key), in order, in one round trip. ``names`` restricts the features read
        (every request must then be of an entity those names belong to), or maps an entity to the features read
        for its rows (entities not in the map read every feature)."""
        reqs, fields = self._plan(requests, names)
        return self._decode(reqs, fields, self._read(reqs, fields))

    @staticmethod
    def _plan(requests: Sequence[tuple[str, str]], names: Sequence[str] | Mapping[str, Sequence[str]] | None
              ) -> tuple[list[tuple[str, str]], dict[str, list[str]]]:
        reqs = [(_entity(e), _key(k)) for e, k in requests]
        per_entity: Mapping[str, Sequence[str] | None] = (
            names if isinstance(names, Mapping) else dict.fromkeys(STORED_ENTITIES, names))
        return reqs, {e: _names(e, per_entity.get(e)) for e in {e for e, _ in reqs}}

    @staticmethod
    def _decode(reqs: list[tuple[str, str]], fields: dict[str, list[str]],
                raw: list[tuple[list[bytes | None], bytes | None]]) -> list[dict[str, Any]]:
        return [_decode_row(e, fields[e], vals, ts) for (e, _), (vals, ts) in zip(reqs, raw, strict=True)]

    def begin_read_many(
        self, requests: Sequence[tuple[str, str]], names: Sequence[str] | Mapping[str, Sequence[str]] | None = None
    ) -> Callable[[], list[dict[str, Any]]]:
        """:meth:`read_many` in two halves: the request goes out now, the returned function waits for the rows.
        Work done in between overlaps the round trip (Redis: the commands are written to the socket at once and
        the replies read when asked for; the connection is held until then, so call it soon and exactly once).
        Errors of either half are raised by the returned function."""
        reqs, fields = self._plan(requests, names)
        try:
            wait = self._begin_read(reqs, fields)
        except Exception as exc:  # raised when the rows are asked for, like a failed read
            error = exc

            def failed() -> list[dict[str, Any]]:
                raise error
            return failed
        return lambda: self._decode(reqs, fields, wait())

    def _begin_read(self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
                    ) -> Callable[[], list[tuple[list[bytes | None], bytes | None]]]:
        """Default: nothing to overlap, the read happens when the rows are asked for."""
        return lambda: self._read(requests, fields)

    def read(self, entity: str, key: str, names: Sequence[str] | None = None) -> dict[str, Any]:
        """One row (a one-request :meth:`read_many`)."""
        return self.read_many([(entity, key)], names)[0]

    @abc.abstractmethod
    def _write(self, entity: str, rows: dict[str, dict[str, bytes]], ts_us: int) -> None: ...

    @abc.abstractmethod
    def _read(
        self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
    ) -> list[tuple[list[bytes | None], bytes | None]]:
        """Per request: the encoded values of ``fields[entity]`` (None where missing) and the ``_ts`` bytes."""

    @abc.abstractmethod
    def clear(self) -> int:
        """Delete every row of this store (its key prefix only, for Redis); returns how many."""

    @abc.abstractmethod
    def delete(self, entity: str, keys: Sequence[str]) -> int:
        """Delete the rows of ``keys`` of ``entity`` (a forgotten user's); returns how many existed."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> OnlineFeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessFeatureStore(OnlineFeatureStore):
    """Rows in a dict of this process (values kept msgpack-encoded, exactly as Redis holds them)."""

    url = "memory://"

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], tuple[dict[str, bytes], bytes]] = {}

    def _write(self, entity: str, rows: dict[str, dict[str, bytes]], ts_us: int) -> None:
        ts = str(ts_us).encode()
        for key, fields in rows.items():
            self._rows[(entity, key)] = (fields, ts)

    def _read(
        self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
    ) -> list[tuple[list[bytes | None], bytes | None]]:
        out: list[tuple[list[bytes | None], bytes | None]] = []
        for e, k in requests:
            stored = self._rows.get((e, k))
            if stored is None:
                out.append(([None] * len(fields[e]), None))
            else:
                values, ts = stored
                out.append(([values.get(n) for n in fields[e]], ts))
        return out

    def clear(self) -> int:
        n = len(self._rows)
        self._rows.clear()
        return n

    def delete(self, entity: str, keys: Sequence[str]) -> int:
        return sum(self._rows.pop((_entity(entity), _key(k)), None) is not None for k in keys)

    def __len__(self) -> int:
        return len(self._rows)


class _Ticket:
    """One read in flight on a held connection: how many replies it waits for and those read so far."""

    __slots__ = ("done", "error", "got", "n")

    def __init__(self, n: int) -> None:
        self.n = n
        self.got: list[Any] = []
        self.done = n == 0
        self.error: BaseException | None = None


class RedisFeatureStore(OnlineFeatureStore):
    """Rows as Redis hashes under ``prefix``. Reads: one pipeline (``transaction=False``) of HMGETs; writes: one
    MULTI/EXEC pipeline per ``write_chunk`` rows, each row replaced whole (DEL + HSET)."""

    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX, write_chunk: int = 1000) -> None:
        import redis

        self.url = url
        self.prefix = prefix
        self.write_chunk = write_chunk
        self._local = threading.local()  # a held read connection per thread (see _begin_read)
        try:
            self._client = redis.Redis.from_url(url, socket_timeout=30)
            self._client.ping()
        except (redis.RedisError, ValueError) as exc:
            raise StoreError(f"feature store: cannot reach Redis at {url}: {exc}") from None

    def _k(self, entity: str, key: str) -> str:
        return f"{self.prefix}{entity}:{key}"

    def _write(self, entity: str, rows: dict[str, dict[str, bytes]], ts_us: int) -> None:
        ts = str(ts_us).encode()
        items = list(rows.items())
        for lo in range(0, len(items), self.write_chunk):
            # MULTI/EXEC: a reader never sees a row between its DEL and its HSET (still one round trip a chunk)
            pipe = self._client.pipeline(transaction=True)
            for key, fields in items[lo : lo + self.write_chunk]:
                k = self._k(entity, key)
                pipe.delete(k)
                pipe.hset(k, mapping={**fields, _TS_FIELD: ts})  # type: ignore[dict-item]
            pipe.execute()

    def _read(
        self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
    ) -> list[tuple[list[bytes | None], bytes | None]]:
        if len(requests) == 1:  # one row (a warm serving request: the user's): the command alone, no pipeline
            (e, k), = requests
            vals = self._client.execute_command("HMGET", self._k(e, k), *fields[e], _TS_FIELD)
            return [(vals[:-1], vals[-1])]
        pipe = self._client.pipeline(transaction=False)
        for e, k in requests:
            pipe.hmget(self._k(e, k), [*fields[e], _TS_FIELD])
        replies = pipe.execute()
        return [(vals[:-1], vals[-1]) for vals in replies]

    def _begin_read(self, requests: list[tuple[str, str]], fields: dict[str, list[str]]
                    ) -> Callable[[], list[tuple[list[bytes | None], bytes | None]]]:
        """The HMGETs written now (pipelined, no transaction) on this thread's own connection; their replies read by
        the returned function. The connection is the thread's for good (made by the client's pool, so with its
        settings): no pool checkout per request, which cost a third of the client's time.

        Several reads may be in flight on it at once (requests interleaved on one event loop): Redis answers in
        order, so each reply goes to the oldest read still missing replies (:class:`_Ticket`), whichever read's
        function is reading — a read collected late, or never, gets exactly its own replies. A failure of the
        connection fails every read in flight on it (and drops it: the next read reconnects)."""
        local = self._local
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = self._client.connection_pool.make_connection()
            local.inflight = collections.deque()
        ticket = _Ticket(len(requests))
        try:
            conn.send_packed_command(conn.pack_commands(
                [("HMGET", self._k(e, k), *fields[e], _TS_FIELD) for e, k in requests]))
        except BaseException as exc:
            self._fail(local, exc)
            raise
        local.inflight.append(ticket)

        def wait() -> list[tuple[list[bytes | None], bytes | None]]:
            while not ticket.done:
                if ticket.error is not None:
                    raise ticket.error
                self._read_one(local)
            return [(vals[:-1], vals[-1]) for vals in ticket.got]

        return wait

    @staticmethod
    def _read_one(local: threading.local) -> None:
        """Read one reply from the thread's connection and hand it to the oldest read in flight."""
        inflight = local.inflight
        try:
            reply = local.conn.read_response()
        except BaseException as exc:
            RedisFeatureStore._fail(local, exc)
            return
        head = inflight[0]
        head.got.append(reply)
        if len(head.got) == head.n:
            head.done = True
            inflight.popleft()

    @staticmethod
    def _fail(local: threading.local, exc: BaseException) -> None:
        local.conn.disconnect()
        for t in local.inflight:
            t.error = exc
        local.inflight.clear()

    def delete(self, entity: str, keys: Sequence[str]) -> int:
        names = [self._k(_entity(entity), _key(k)) for k in keys]
        return int(self._client.delete(*names)) if names else 0

    def clear(self) -> int:
        n = 0
        batch: list[bytes] = []
        for k in self._client.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(k)
            if len(batch) >= 1000:
                n += self._client.unlink(*batch)
                batch.clear()
        if batch:
            n += self._client.unlink(*batch)
        return n

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.disconnect()
        self._client.close()


def open_feature_store(url: str | None = None, *, prefix: str = DEFAULT_PREFIX) -> OnlineFeatureStore:
    """``redis://`` / ``rediss://`` / ``unix://`` URL -> :class:`RedisFeatureStore`; None -> in-process."""
    if url is None or url == "":
        return InProcessFeatureStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisFeatureStore(url, prefix=prefix)
    raise ValidationError("redis", f"must be a redis://, rediss:// or unix:// URL, got {url!r}")
