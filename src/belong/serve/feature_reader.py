"""Online features under a time budget, with a circuit breaker: a dependency failure degrades, never fails.

:class:`FeatureReader` reads the user and the chosen candidates from the online feature store in one round trip
(one pipeline of ``HMGET``s) and assembles model inputs with :func:`belong.features.candidate_features`, the code
training rows are built with. Rows are kept in process (:mod:`belong.serve.rowcache`, exact while Redis reports
changes: :mod:`belong.serve.tracking`), so a warm request whose rows are unchanged makes no round trip. The read
is split in two — :meth:`FeatureReader.start` sends before the rules run, :meth:`FeatureReader.finish` collects —
and synchronous (why not asyncio: docs/MEASUREMENTS.md). The socket timeout is the stage's budget, retries are off;
after a connection failure or three slow reads the breaker skips Redis for ``breaker_s`` (answers degraded), then
tries again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from belong.domain import SURFACE_NAME, Surface
from belong.features import (
    MATERIALIZED_AT,
    OnlineFeatureStore,
    RedisFeatureStore,
    candidate_features,
    open_feature_store,
)
from belong.features.assemble import CANDIDATE_ENTITY
from belong.features.registry import defaults, specs_for
from belong.serve.rowcache import RowCache
from belong.serve.tracking import InvalidationListener

#: the user's model-input features (answered once per response, not per item)
USER_INPUTS = tuple(s.name for s in specs_for("user", model_input_only=True))


class BudgetRedisFeatureStore(RedisFeatureStore):
    """:class:`RedisFeatureStore` with the stage budget as socket timeout, no retries, and no ping at start
    (the server must start, degraded, while Redis is down)."""

    def __init__(self, url: str, *, prefix: str, timeout_s: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = url
        self.prefix = prefix
        self.write_chunk = 2000
        self._local = threading.local()
        self._client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0),
            retry_on_timeout=False,
        )


_USER = "\x00user"  # the memo's slot for the user's inputs (no item id is this)

TIMEOUTS_TO_OPEN = 3  # consecutive reads over budget that open the breaker


class _Recorder(dict):
    """A row of defaults that records which names are read from it."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(row)
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> Any:
        self.read.add(name)
        return super().__getitem__(name)


def user_names(surface: Surface) -> tuple[str, ...] | None:
    """The user's stored features that :func:`candidate_features` reads for ``surface`` (None: all of them, when
    candidates are users too), found by assembling one row from defaults."""
    entity = CANDIDATE_ENTITY[surface]
    if entity == "user":
        return None
    user = _Recorder(defaults("user"))
    candidate_features(surface, "u", user, "c", defaults(entity))  # type: ignore[arg-type]
    return tuple(s.name for s in specs_for("user") if s.name in user.read)


@dataclass(frozen=True, slots=True)
class Pending:
    """A feature read in flight (:meth:`FeatureReader.start`); ``unavailable`` names why none was sent."""

    surface: Surface
    user_id: str
    wait: Callable[[], list[dict[str, Any]]] | None
    missing: list[str]
    unavailable: str | None
    #: candidate rows the row cache held when the read was sent (not read again when the request finishes)
    found: dict[str, Any] | None = None
    #: the user's row when the row cache held it (exact mode: see :mod:`belong.serve.rowcache`); else it is read
    user_row: dict[str, Any] | None = None
    #: the row cache's mark taken before the read was sent (rows read then are kept only if still valid)
    since: int = 0


@dataclass(frozen=True, slots=True)
class Online:
    """The online features of one answer: the user's model inputs once, then each item's other inputs (both empty
    when the read was not assembled: :meth:`FeatureReader.finish` with ``assemble=False``)."""

    user: dict[str, Any]
    items: list[dict[str, Any]]
    #: per item, the materialisation times of the stored rows it was assembled from (user's, item's); None when
    #: a row has none (defaults): equal keys mean equal rows
    keys: tuple | None = None


class FeatureReader:
    """Reads online features for one request; see the module docstring."""

    def __init__(self, store: OnlineFeatureStore, breaker_s: float, rows: RowCache | None = None) -> None:
        self.store = store
        self.breaker_s = breaker_s
        self.rows = rows if rows is not None else RowCache(0.0, 1)
        self._open_until = 0.0
        self._timeouts = 0  # consecutive reads over budget
        self._names = {s: {"user": n} if (n := user_names(s)) is not None else None for s in Surface}

    @classmethod
    def open(cls, redis_url: str | None, *, prefix: str, budget_ms: float, breaker_s: float,
             cache_s: float = 0.0, cache_rows: int = 1, tracking: bool = True) -> FeatureReader:
        """``tracking``: keep the row cache exact with Redis's invalidation messages (:mod:`belong.serve.tracking`;
        Redis only, and only when ``cache_s`` > 0)."""
        if redis_url:
            store = BudgetRedisFeatureStore(redis_url, prefix=prefix, timeout_s=budget_ms / 1e3)
            listener = InvalidationListener(redis_url, prefix).start() if tracking and cache_s > 0 else None
            return cls(store, breaker_s, RowCache(cache_s, cache_rows, listener, prefix))
        return cls(open_feature_store(None), breaker_s, RowCache(cache_s, cache_rows))

    @property
    def row_cache_mode(self) -> str:
        """``exact`` (invalidated by Redis), ``time-bounded`` (candidate rows only, for their freshness) or
        ``off``."""
        return self.rows.mode

    def start(self, surface: Surface, user_id: str, likely_ids: Sequence[str]) -> Pending:
        """Send the read of the user's row and of the ``likely_ids`` candidate rows missing from the row cache
        (one pipelined round trip) and return at once: the request's rules and selection run while Redis
        answers, and :meth:`finish` collects the rows. ``likely_ids``: the head of the ranked list."""
        if time.monotonic() < self._open_until:
            return Pending(surface, user_id, None, [], "features_unavailable")
        entity = CANDIDATE_ENTITY[surface]
        likely = list(dict.fromkeys(likely_ids))
        cache = self.rows
        since = cache.mark()
        user_row = cache.get_many("user", [user_id], tag=SURFACE_NAME[surface], exact_only=True)[0]
        rows = cache.get_many(entity, likely)
        missing = [c for c, r in zip(likely, rows, strict=True) if r is None]
        reqs = ([] if user_row is not None else [("user", user_id)]) + [(entity, c) for c in missing]
        wait = self.store.begin_read_many(reqs, self._names[surface]) if reqs else _nothing
        found = {c: r for c, r in zip(likely, rows, strict=True) if r is not None}
        return Pending(surface, user_id, wait, missing, None, found, user_row, since)  # type: ignore[arg-type]

    def finish(self, pending: Pending, item_ids: Sequence[str],
               memo: dict[str, tuple[tuple[int, int], dict]] | None = None,
               assemble: bool = True) -> tuple[Online | None, str | None]:
        """(online features of ``item_ids``, None) or (None, the reason they are missing). Items that were not
        among the likely ones and are not cached are read then (a second round trip, rare: the head of a ranked
        list is what is shown unless rules remove much of it). ``memo``: see :meth:`_assemble`. ``assemble=False``:
        the rows are read (and cached) but not assembled into model inputs: the answer's :attr:`Online.user` and
        :attr:`Online.items` are empty, only :attr:`Online.keys` is given (an answer that shows no feature rows,
        a non-admin one, needs no more)."""
        if pending.unavailable:
            return None, pending.unavailable
        try:
            online = self._finish(pending, item_ids, memo, assemble)
        except (TimeoutError, RedisTimeoutError):  # one slow read degrades this request; 3 in a row open the breaker
            self._timeouts += 1
            if self._timeouts >= TIMEOUTS_TO_OPEN:
                self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        except Exception:  # refused, reset, a broken connection: the store is unavailable, stop asking a while
            self._open_until = time.monotonic() + self.breaker_s
            return None, "features_unavailable"
        self._timeouts = 0
        return online, None

    def read(self, surface: Surface, user_id: str, item_ids: Sequence[str],
             memo: dict[str, tuple[tuple[int, int], dict]] | None = None) -> tuple[Online | None, str | None]:
        """:meth:`start` and :meth:`finish` with nothing in between (the items are known)."""
        return self.finish(self.start(surface, user_id, item_ids), item_ids, memo)

    def _finish(self, pending: Pending, item_ids: Sequence[str],
                memo: dict[str, tuple[tuple[int, int], dict]] | None, assemble: bool = True) -> Online:
        surface = pending.surface
        entity = CANDIDATE_ENTITY[surface]
        assert pending.wait is not None
        read = pending.wait()
        now = time.monotonic()
        user_row = pending.user_row
        if user_row is None:
            user_row, read = read[0], read[1:]
            self.rows.put_many("user", [(pending.user_id, user_row)], now, tag=SURFACE_NAME[surface],
                               since=pending.since,
                               exact_only=True)
        fetched = dict(zip(pending.missing, read, strict=True))
        if fetched:
            self.rows.put_many(entity, list(fetched.items()), now, since=pending.since)
        known = pending.found or {}
        cand_rows = [known.get(c) or fetched.get(c) for c in item_ids]
        if None in cand_rows:  # not among the likely ones: the row cache may still hold them
            again = self.rows.get_many(entity, [c for c, r in zip(item_ids, cand_rows, strict=True) if r is None], now)
            it = iter(again)
            cand_rows = [r if r is not None else next(it) for r in cand_rows]
        late = [c for c, r in zip(item_ids, cand_rows, strict=True) if r is None]
        if late:
            since = self.rows.mark()
            more = dict(zip(late, self.store.read_many([(entity, c) for c in late]), strict=True))
            self.rows.put_many(entity, list(more.items()), now, since=since)
            cand_rows = [r if r is not None else more[c] for c, r in zip(item_ids, cand_rows, strict=True)]
        if not assemble:
            return self._keys(user_row, cand_rows)
        return self._assemble(surface, pending.user_id, user_row, item_ids, cand_rows, memo)

    @staticmethod
    def _keys(user_row: dict, cand_rows: list) -> Online:
        """Only the rows' materialisation times (:attr:`Online.keys`, as :meth:`_assemble` gives them)."""
        user_ts = user_row[MATERIALIZED_AT]
        keys = tuple((user_ts, row[MATERIALIZED_AT]) for row in cand_rows)
        known = user_ts is not None and all(k[1] is not None for k in keys)
        return Online({}, [], keys if known else None)

    @staticmethod
    def _assemble(surface: Surface, user_id: str, user_row: dict, item_ids: Sequence[str], cand_rows: list,
                  memo: dict[str, tuple[tuple[int, int], dict]] | None) -> Online:
        """Model inputs of each item. ``memo`` (kept with the user's cached candidate list) holds rows assembled
        before: one is reused while the user's and the item's stored rows carry the same materialisation times
        (assembly is a pure function of the two rows), so a warm request reads fresh rows but only assembles what
        changed."""
        if memo is None:
            user = {n: user_row[n] for n in USER_INPUTS}
            items = [candidate_features(surface, user_id, user_row, c, row, user_columns=False)
                     for c, row in zip(item_ids, cand_rows, strict=True)]
            return Online(user, items)
        done = memo.get(_USER)  # (the user's row object, its inputs): the same object while it is unchanged
        if done is not None and done[0] is user_row:
            user = done[1]
        else:
            user = {n: user_row[n] for n in USER_INPUTS}
            memo[_USER] = (user_row, user)  # type: ignore[assignment]  # the user's entry: (row, inputs)
        user_ts = user_row[MATERIALIZED_AT]
        items = []
        keys = []
        for c, row in zip(item_ids, cand_rows, strict=True):
            key = (user_ts, row[MATERIALIZED_AT])
            keys.append(key)
            hit = memo.get(c)
            if hit is not None and hit[0] == key and None not in key:
                items.append(hit[1])
                continue
            assembled = candidate_features(surface, user_id, user_row, c, row, user_columns=False)
            # lists as tuples (the same JSON): a memoised row then holds no object the garbage collector must walk
            assembled = {n: tuple(v) if type(v) is list else v for n, v in assembled.items()}
            memo[c] = (key, assembled)
            items.append(assembled)
        known = user_ts is not None and all(k[1] is not None for k in keys)
        return Online(user, items, tuple(keys) if known else None)

    def ping(self) -> bool:
        """Whether the feature store answers now (for /readyz)."""
        try:
            self.store.read_many([("user", "__ping__")], ["user_locale"])
            return True
        except Exception:
            return False

    def close(self) -> None:
        self.rows.close()
        self.store.close()


def _nothing() -> list[dict[str, Any]]:
    """The read of a request whose rows were all in the row cache: no round trip."""
    return []
