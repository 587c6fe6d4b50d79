"""The log position (``EventStore.position``) and reads after / up to one, on both backends: what a state snapshot
records and the API replays after it."""

from __future__ import annotations

from belong.domain import Event, EventType, TargetKind
from belong.eventlog import open_store


def _ev(i: int, ts: int) -> Event:
    return Event(event_id=f"p{i}", ts_us=ts, type=EventType.JOIN, actor=f"u{i}", target="c1",
                 target_kind=TargetKind.COMMUNITY)


def test_position_and_the_tail_after_it(store_spec: str) -> None:
    with open_store(store_spec) as st:
        assert st.position() == 0
        st.append([_ev(i, 1_000 + i) for i in range(5)])
        pos = st.position()
        assert pos >= 5
        # later events, one of them older than everything before (a late arrival): still in the tail
        st.append([_ev(10, 2_000), _ev(11, 500), _ev(12, 1_500)])
        st.append([_ev(10, 2_000)])  # a re-send: no new position
        tail = st.read_events(after_seq=pos)
        assert tail.column("event_id").to_pylist() == ["p11", "p12", "p10"]  # (ts_us, seq) order
        head = st.read_events(upto_seq=pos)
        assert head.column("event_id").to_pylist() == [f"p{i}" for i in range(5)]
        assert st.read_events(after_seq=st.position()).num_rows == 0
        assert st.read_events(after_seq=pos, types=["join"], start_us=1_000).column("event_id").to_pylist() == [
            "p12", "p10"]
