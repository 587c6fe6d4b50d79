"""The :class:`~belong.eventlog.EventStore` contract: what every event-store backend guarantees, as pytest tests."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from belong.domain import parse_community, parse_event, parse_user
from belong.errors import StoreError, ValidationError
from belong.eventlog import AppendResult, EventStore, open_store
from belong.schema import EVENT_SCHEMA, STATE_COLUMNS, USER_SCHEMA, table_to_events

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z


def rows(ids: list[str], *, ts0: int = T0, step: int = 1_000_000, etype: str = "join",
         target: str = "c1") -> list[dict]:
    """Event records with these ids, ``step`` microseconds apart from ``ts0``, actors u0-u6."""
    kind = {"join": "community", "view": "content", "friend_request": "user", "message": "community"}[etype]
    return [
        {"event_id": eid, "ts_us": ts0 + i * step, "type": etype, "actor": f"u{i % 7}", "target": target,
         "target_kind": kind, "value": 1.0}
        for i, eid in enumerate(ids)
    ]


def tbl(records: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(records, schema=EVENT_SCHEMA)


def ids_of(t: pa.Table) -> list[str]:
    return t.column("event_id").to_pylist()


class EventStoreContract:
    """Idempotent appends, validation, ordered and filtered reads, entities, stats and concurrency.

    Subclass it as ``Test...`` and supply the fixture ``store_spec``: the spec (a directory or URL) of an empty store,
    fresh for each test. Override :meth:`open` when your backend is not opened by :func:`belong.eventlog.open_store`.
    """

    def open(self, spec: str, *, create: bool = True) -> EventStore:
        """An open handle on the store ``spec`` (used as a context manager; opened several times in some tests)."""
        return open_store(spec, create=create)

    # -------------------------------------------------------------------------------------------- idempotency
    def test_append_counts_new_and_duplicate_events(self, store_spec: str) -> None:
        with self.open(store_spec) as st:
            assert st.append(tbl(rows(["a", "b", "c"]))) == AppendResult(3, 0)
            assert st.append(tbl(rows(["a", "b", "c"]))) == AppendResult(0, 3)  # the same batch again
            assert st.append(tbl(rows(["c", "d"]))) == AppendResult(1, 1)  # overlapping batch
            assert st.append(tbl(rows(["e", "e", "f", "e"]))) == AppendResult(2, 2)  # duplicates inside one batch
            assert st.count() == 6
            assert sorted(ids_of(st.read_events())) == ["a", "b", "c", "d", "e", "f"]

    def test_append_reports_which_rows_it_inserted(self, store_spec: str) -> None:
        """Only the rows the log inserted may change a live state: ``inserted`` names them by position."""
        view = rows(["x"], etype="view")[0]
        join = {**rows(["x"])[0], "ts_us": T0 + 7}
        with self.open(store_spec) as st:
            got = st.append(tbl([view, join]))  # one event_id twice: a view, then a join
            assert (got.accepted, got.duplicates, got.inserted) == (1, 1, (0,))
            assert st.read_events().column("type").to_pylist() == ["view"]
            got = st.append(tbl(rows(["a", "x", "b", "a", "c"])))
            assert got.inserted == (0, 2, 4) and got.accepted == 3 and got.duplicates == 2
            assert st.append(tbl(rows(["a", "b"]))).inserted == ()
            assert st.append(tbl(rows(["n1", "n2"]))).inserted == (0, 1)

    def test_inserted_rows_are_exact_under_concurrent_writers(self, store_spec: str) -> None:
        """Two handles appending overlapping batches at once: each id is reported inserted by exactly one."""
        n = 40
        reported: list[list[str]] = [[], []]

        def work(k: int) -> None:
            with self.open(store_spec) as st:
                for b in range(n):
                    ids = [f"e{b}-{j}" for j in range(5)] + [f"own{k}-{b}"]
                    got = st.append(tbl(rows(ids)))
                    reported[k].extend(ids[i] for i in got.inserted)

        with self.open(store_spec):
            pass  # created before the threads race
        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        both = reported[0] + reported[1]
        assert len(both) == len(set(both)) == n * 7
        with self.open(store_spec) as st:
            assert sorted(ids_of(st.read_events())) == sorted(both)

    def test_forget_deletes_a_users_events_and_keeps_them_out_for_good(self, store_spec: str) -> None:
        """``forget``: the user's events (as actor or user target) and row go; later appends and upserts naming
        them are dropped (``forgotten``), in this handle and in a reopened one."""
        def ev(eid: str, etype: str, actor: str, target: str) -> dict:
            kind = "user" if etype.startswith("friend") else "community"
            return {"event_id": eid, "ts_us": T0, "type": etype, "actor": actor, "target": target,
                    "target_kind": kind, "value": 1.0}

        stored = [ev("a1", "join", "gone-1", "c1"), ev("a2", "friend_request", "keep-2", "gone-1"),
                  ev("a3", "join", "keep-2", "c1"), ev("a4", "join", "keep-2", "gone-1")]  # a community named so
        user = {"id": "gone-1", "created_at": T0 // 1_000_000, "age_group": "adult", "locale": "en", "interests": ["x"],
                "status": "active"}
        with self.open(store_spec) as st:
            st.append(tbl(stored))
            st.upsert_users([parse_user(user), parse_user({**user, "id": "keep-2"})])
            got = st.forget("gone-1")
            assert (got.events, got.users, got.already, got.related) == (2, 1, False, ("keep-2",))
            assert ids_of(st.read_events()) == ["a3", "a4"]
            assert st.users().column("id").to_pylist() == ["keep-2"]
            assert st.forgotten(["gone-1", "keep-2", "never"]) == {"gone-1"}
        with self.open(store_spec, create=False) as st:  # durable: a new handle (a restarted process) knows
            late = [ev("a1", "join", "gone-1", "c1"), ev("b1", "join", "keep-2", "c2"),
                    ev("b2", "friend_accept", "keep-2", "gone-1"), ev("b3", "join", "gone-1", "c3"),
                    ev("a3", "join", "keep-2", "c1")]
            res = st.append(tbl(late))
            assert (res.accepted, res.duplicates, res.forgotten, res.inserted) == (1, 1, 3, (1,))
            assert st.upsert_users([parse_user(user)]) == 0
            assert st.users().column("id").to_pylist() == ["keep-2"]
            assert sorted(ids_of(st.read_events())) == ["a3", "a4", "b1"]
            again = st.forget("gone-1")
            assert (again.events, again.users, again.already) == (0, 0, True)
            with pytest.raises(ValidationError):
                st.forget("")

    def test_first_copy_of_a_resent_event_wins(self, store_spec: str) -> None:
        first = rows(["x"], ts0=T0)
        second = rows(["x"], ts0=T0 + 5, target="c2")
        with self.open(store_spec) as st:
            st.append(tbl(first + second))
            st.append(tbl(second))
            got = st.read_events().to_pylist()
        assert len(got) == 1 and got[0]["target"] == "c1" and got[0]["ts_us"] == T0

    def test_append_accepts_domain_events_and_round_trips_every_field(self, store_spec: str) -> None:
        events = [
            parse_event({"event_id": "imp-1", "ts": "2024-05-01T10:00:00.123456Z", "type": "impression",
                         "actor": "u1", "target": "c9", "request_id": "r1", "surface": "communities",
                         "position": 3, "propensity": 1 / 3}),
            parse_event({"event_id": "clk-1", "ts": "2024-05-01T10:00:01Z", "type": "click", "actor": "u1",
                         "target": "c9", "request_id": "r1"}),
            parse_event({"event_id": 'q"u,o\'te ✓ 🎉', "ts": 1714557602.5, "type": "voice_minutes", "actor": "u,2",
                         "target": "c\"9", "value": 0.1}),
            parse_event({"event_id": "fr-1", "ts": 1714557603, "type": "friend_request", "actor": "u1",
                         "target": "u2"}),
            parse_event({"event_id": "\\.", "ts": 1714557604, "type": "view", "actor": "\\N", "target": "NULL",
                         "value": 1e-300}),  # COPY's end-of-data and NULL markers are data here
        ]
        with self.open(store_spec) as st:
            assert st.append(events) == AppendResult(5, 0)
            assert table_to_events(st.read_events()) == events

    def test_validation_failure_stores_nothing(self, store_spec: str) -> None:
        good = rows([f"g{i}" for i in range(50)])
        bad_rows = [
            {**good[0], "event_id": "bad-type", "type": "teleport"},
            {**good[0], "event_id": "", "type": "join"},
            {**good[0], "event_id": "bad-kind", "target_kind": "user"},
            {**good[0], "event_id": "bad\x00nul"},
            {**good[0], "event_id": "bad-ts", "ts_us": -1},
            {**good[0], "event_id": "bad-value", "type": "message", "value": 0.0},
        ]
        with self.open(store_spec) as st:
            for bad in bad_rows:
                with pytest.raises(ValidationError):
                    st.append(tbl(good + [bad]))
            assert st.count() == 0
            assert st.append(tbl(good)).accepted == 50

    def test_empty_append_and_empty_store(self, store_spec: str) -> None:
        with self.open(store_spec) as st:
            assert st.append([]) == AppendResult(0, 0)
            assert st.read_events().schema == EVENT_SCHEMA and st.read_events().num_rows == 0
            assert st.time_span() is None
            s = st.stats()
            assert s["events"] == 0 and s["first_event"] is None and s["active_users"] == 0

    def test_events_survive_close_and_reopen(self, store_spec: str) -> None:
        with self.open(store_spec) as st:
            st.append(tbl(rows(["a", "b"])))
        with self.open(store_spec, create=False) as st:
            assert ids_of(st.read_events()) == ["a", "b"]
            assert st.append(tbl(rows(["a"]))) == AppendResult(0, 1)

    # -------------------------------------------------------------------------------------------- reads
    def test_reads_filter_by_half_open_time_range_and_type(self, store_spec: str) -> None:
        joins = rows([f"j{i}" for i in range(10)], step=10)  # ts T0, T0+10, ..., T0+90
        views = rows([f"v{i}" for i in range(10)], ts0=T0 + 5, step=10, etype="view", target="x1")
        with self.open(store_spec) as st:
            st.append(tbl(joins + views))
            assert ids_of(st.read_events(T0 + 10, T0 + 30)) == ["j1", "v1", "j2", "v2"]
            assert ids_of(st.read_events(T0 + 10, T0 + 30, types=["view"])) == ["v1", "v2"]
            assert ids_of(st.read_events(start_us=T0 + 85)) == ["v8", "j9", "v9"]
            assert ids_of(st.read_events(end_us=T0 + 5)) == ["j0"]
            assert st.read_events(types=["join", "view"]).num_rows == 20
            assert st.read_events(types=["message"]).num_rows == 0
            assert st.read_events(T0 + 50, T0 + 50).num_rows == 0

    def test_order_is_time_then_arrival(self, store_spec: str) -> None:
        with self.open(store_spec) as st:
            st.append(tbl(rows(["late"], ts0=T0 + 100)))
            st.append(tbl(rows(["tie-b", "tie-a"], step=0)))  # same ts: the order they were acknowledged in
            st.append(tbl(rows(["tie-c"])))
            st.append(tbl(rows(["early"], ts0=T0 - 100)))
            assert ids_of(st.read_events()) == ["early", "tie-b", "tie-a", "tie-c", "late"]

    def test_read_columns_is_read_events_projected(self, store_spec: str) -> None:
        """The columnar read a state is built from: the same rows in the same (time, arrival) order as
        ``read_events``, only the columns asked for, up to a log position; an unknown column is refused by name."""
        with self.open(store_spec) as st:
            assert st.read_columns(STATE_COLUMNS).schema == pa.schema([EVENT_SCHEMA.field(n) for n in STATE_COLUMNS])
            assert st.read_columns(STATE_COLUMNS).num_rows == 0
            st.append(tbl(rows(["late"], ts0=T0 + 100)))
            st.append(tbl(rows(["tie-b", "tie-a"], step=0)))
            position = st.position()
            st.append(tbl(rows(["tie-c"], etype="view", target="x")))
            st.append(tbl(rows(["early"], ts0=T0 - 100)))
            cols = ["event_id", *STATE_COLUMNS]
            assert st.read_columns(cols).equals(st.read_events().select(cols))
            assert st.read_columns(["event_id"]).column(0).to_pylist() == ["early", "tie-b", "tie-a", "tie-c", "late"]
            upto = st.read_columns(["event_id", "ts_us"], upto_seq=position)
            assert upto.column("event_id").to_pylist() == ["tie-b", "tie-a", "late"]
            assert upto.equals(st.read_events(upto_seq=position).select(["event_id", "ts_us"]))
            with pytest.raises(StoreError, match="nope"):
                st.read_columns(["ts_us", "nope"])

    def test_iter_events_streams_in_batches(self, store_spec: str) -> None:
        with self.open(store_spec) as st:
            st.append(tbl(rows([f"e{i:03d}" for i in range(250)])))
            batches = list(st.iter_events(batch_size=100))
        assert [b.num_rows for b in batches] == [100, 100, 50]
        assert all(b.schema == EVENT_SCHEMA for b in batches)
        assert [i for b in batches for i in b.column("event_id").to_pylist()] == [f"e{i:03d}" for i in range(250)]

    def test_export_parquet_round_trip(self, store_spec: str, tmp_path: Path) -> None:
        data = (rows([f"j{i}" for i in range(30)])
                + rows([f"v{i}" for i in range(30)], ts0=T0 + 1, etype="view", target="x"))
        with self.open(store_spec) as st:
            st.append(tbl(data))
            n = st.export_parquet(tmp_path / "out" / "all.parquet")
            assert n == 60
            assert pq.read_table(tmp_path / "out" / "all.parquet").equals(st.read_events())
            n = st.export_parquet(tmp_path / "views.parquet", start_us=T0 + 10_000_000, types=["view"])
            back = pq.read_table(tmp_path / "views.parquet")
            assert n == back.num_rows == 20 and set(back.column("type").to_pylist()) == {"view"}
            assert back.equals(st.read_events(start_us=T0 + 10_000_000, types=["view"]))

    # -------------------------------------------------------------------------------------------- entities
    def test_entity_upserts_last_write_wins(self, store_spec: str) -> None:
        u1 = parse_user({"id": "u1", "created_at": 1_700_000_000, "age_group": "teen", "interests": ["music", "art"]})
        u2 = parse_user({"id": "u2", "created_at": 1_700_000_001, "locale": "pt-BR"})
        u1_new = parse_user({"id": "u1", "created_at": 1_700_000_000, "age_group": "adult", "interests": []})
        c1 = parse_community({"id": "c1", "name": "Chess", "created_at": "2024-01-01", "tags": "games, chess",
                              "is_age_restricted": True, "invite_only": "yes"})
        c1_new = parse_community({"id": "c1", "name": "Chess club", "created_at": "2024-01-01", "discoverable": False})
        with self.open(store_spec) as st:
            assert st.upsert_users([u1, u2]) == 2
            assert st.upsert_users([u1_new]) == 1
            users = {r["id"]: r for r in st.users().to_pylist()}
            assert users["u1"]["age_group"] == "adult" and users["u1"]["interests"] == []
            assert users["u2"]["locale"] == "pt-BR" and users["u2"]["interests"] == []
            assert st.users().schema == USER_SCHEMA
            st.upsert_communities([c1])
            got = st.communities().to_pylist()[0]
            assert got["tags"] == ["games", "chess"] and got["is_age_restricted"] is True and got["invite_only"] is True
            st.upsert_communities([c1, c1_new])  # the last row of an id inside one batch wins too
            got = st.communities().to_pylist()
            assert len(got) == 1 and got[0]["name"] == "Chess club" and got[0]["discoverable"] is False
            assert got[0]["tags"] == [] and got[0]["is_age_restricted"] is False
            assert st.content().num_rows == 0
            assert st.entity_counts() == {"users": 2, "communities": 1, "content": 0}

    def test_entity_validation_failure_stores_nothing(self, store_spec: str) -> None:
        good = {"id": "u1", "created_at_us": 1, "age_group": "teen", "locale": "en", "interests": None,
                "status": "active"}
        bad = {**good, "id": "u2", "status": "zombie"}
        with self.open(store_spec) as st:
            with pytest.raises(ValidationError) as exc:
                st.upsert_users(pa.Table.from_pylist([good, bad], schema=USER_SCHEMA))
            assert exc.value.field == "status"
            assert st.users().num_rows == 0

    # -------------------------------------------------------------------------------------------- stats
    def test_stats(self, store_spec: str) -> None:
        data = (
            rows(["j1", "j2", "j3"], target="c1")
            + rows(["j4"], ts0=T0 + 50_000_000, target="c2")
            + rows(["v1", "v2"], etype="view", target="x1")
            + rows(["f1"], etype="friend_request", target="u99")
        )
        with self.open(store_spec) as st:
            st.append(tbl(data))
            st.upsert_users([parse_user({"id": "u0", "created_at": 0})])
            s = st.stats()
        assert s["events"] == 7
        assert s["events_by_type"] == {"friend_request": 1, "join": 4, "view": 2}
        assert (s["users"], s["communities"], s["content"]) == (1, 0, 0)
        assert s["active_users"] == 3  # u0, u1, u2
        assert s["active_communities"] == 2
        assert s["first_event"] == "2023-11-14T22:13:20Z" and s["last_event"] == "2023-11-14T22:14:10Z"

    # -------------------------------------------------------------------------------------------- concurrency
    def test_concurrent_appends_from_threads(self, store_spec: str) -> None:
        """8 threads append overlapping batches through one store: every event stored once, counts add up."""
        results: list[AppendResult] = []
        errors: list[BaseException] = []
        lock = threading.Lock()
        with self.open(store_spec) as st:

            def worker(w: int) -> None:
                try:
                    for b in range(5):
                        # ids overlap between neighbouring workers: 0..299 of w and w+1 share 100
                        ids = [f"e{(w * 200 + b * 60 + i) % 2000}" for i in range(300)]
                        r = st.append(tbl(rows(ids)))
                        with lock:
                            results.append(r)
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            expected = {f"e{(w * 200 + b * 60 + i) % 2000}" for w in range(8) for b in range(5) for i in range(300)}
            got = ids_of(st.read_events())
            assert len(got) == len(set(got)) == len(expected) and set(got) == expected
            assert sum(r.accepted for r in results) == len(expected)
            assert sum(r.accepted + r.duplicates for r in results) == 8 * 5 * 300

    def test_two_store_instances_share_the_log(self, store_spec: str) -> None:
        """Two open handles (as two processes would have) see each other's writes and keep idempotency."""
        with self.open(store_spec) as a, self.open(store_spec) as b:
            assert a.append(tbl(rows(["a1", "a2"]))) == AppendResult(2, 0)
            assert b.append(tbl(rows(["a2", "b1"]))) == AppendResult(1, 1)
            assert ids_of(a.read_events()) == ids_of(b.read_events()) == ["a1", "a2", "b1"]
