"""Acknowledged means durable: SIGKILL a writer in the middle of appending, then prove that every batch it
acknowledged is stored, and that the batch in flight is stored entirely or not at all (both backends)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from belong.eventlog import open_store

BATCH = 2_000

# Appends batches forever; after each append() returns, prints "<round> <batch>" (the acknowledgement).
_WRITER = f"""
import sys
import pyarrow as pa
from belong.eventlog import open_store
from belong.schema import EVENT_SCHEMA

spec, tag = sys.argv[1], sys.argv[2]
store = open_store(spec)
b = 0
while True:
    rows = [
        {{"event_id": f"{{tag}}-{{b}}-{{i}}", "ts_us": 1_700_000_000_000_000 + b * {BATCH} + i, "type": "view",
          "actor": f"u{{i % 97}}", "target": f"x{{b}}", "target_kind": "content", "value": 1.0}}
        for i in range({BATCH})
    ]
    store.append(pa.Table.from_pylist(rows, schema=EVENT_SCHEMA))
    print(tag, b, flush=True)
    b += 1
"""


def _kill_mid_stream(spec: str, tag: str, acks_before_kill: int) -> list[int]:
    """Run the writer, SIGKILL it after ``acks_before_kill`` acknowledgements; return every acknowledged batch."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, spec, tag], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"writer died early: {proc.stderr.read() if proc.stderr else ''}"
            acked.append(int(line.split()[1]))
            assert time.monotonic() < deadline, "writer too slow"
        proc.send_signal(signal.SIGKILL)  # while it is building or appending the next batch
        proc.wait(timeout=30)
        acked += [int(line.split()[1]) for line in proc.stdout.read().splitlines()]  # acked before the kill landed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acked


def test_sigkill_loses_no_acknowledged_event(store_spec: str) -> None:
    open_store(store_spec).close()  # create the schema before the writers race for it
    rounds = {"r1": _kill_mid_stream(store_spec, "r1", 12), "r2": _kill_mid_stream(store_spec, "r2", 5)}
    with open_store(store_spec, create=False) as st:
        stored = st.read_events().column("event_id").to_pylist()
    assert len(stored) == len(set(stored))
    per_batch: dict[tuple[str, int], int] = {}
    for eid in stored:
        tag, b, _ = eid.split("-")
        per_batch[(tag, int(b))] = per_batch.get((tag, int(b)), 0) + 1
    for tag, acked in rounds.items():
        assert acked == list(range(len(acked)))
        for b in acked:
            assert per_batch.get((tag, b)) == BATCH, f"acknowledged batch {tag}-{b} lost events"
        # the batch in flight when the kill landed: all of it or none of it (append is atomic)
        in_flight = per_batch.get((tag, len(acked)), 0)
        assert in_flight in (0, BATCH)
        assert (tag, len(acked) + 1) not in per_batch
    # and the store still works after the crash
    with open_store(store_spec) as st:
        assert st.append(st.read_events().slice(0, 10)).duplicates == 10
