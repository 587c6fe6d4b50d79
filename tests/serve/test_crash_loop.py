"""SIGKILL a real ``belong serve`` 20 times while clients post events (issue 13, finding 9a): every event the
server acknowledged (202) is in the log afterwards — durable before the answer, in every round."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from belong.datasets import write_world
from belong.eventlog import open_store
from belong.simulate import simulate
from serve_helpers import WRITE_KEY, auth, free_port

ROUNDS = 20
CLIENTS = 3


def _start(store: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "BELONG_API_KEYS_WRITE": WRITE_KEY}
    env.pop("BELONG_REDIS_URL", None)
    belong = str(Path(sys.executable).with_name("belong"))
    proc = subprocess.Popen([belong, "serve", "--store", str(store), "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:  # events are taken as soon as the process listens (no model needed to store them)
        assert proc.poll() is None, "the server exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the server did not come up"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_the_server_20_times_while_clients_post(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with open_store(store) as st:
        for part in simulate(100, 10, seed=6):
            write_world(st, part, progress=False)
    port = free_port()
    acked: list[str] = []
    sent = itertools.count()
    stop = threading.Event()
    lock = threading.Lock()

    def client(k: int) -> None:
        rng = random.Random(k)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            while not stop.is_set():
                n = rng.randint(1, 20)
                ids = [f"crash-{k}-{next(sent)}" for _ in range(n)]
                batch = [{"event_id": e, "ts": 1_790_000_000 + i, "type": "view", "actor": f"u{rng.randrange(100)}",
                          "target": f"x{rng.randrange(50)}"} for i, e in enumerate(ids)]
                try:
                    r = c.post("/v1/events", headers=auth(WRITE_KEY), json={"events": batch})
                except httpx.HTTPError:  # the server is down or died mid-request: nothing was acknowledged
                    time.sleep(0.01)
                    continue
                if r.status_code == 202:
                    with lock:
                        acked.extend(ids)

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(CLIENTS)]
    per_round: list[int] = []
    proc = _start(store, port)
    for t in threads:
        t.start()
    rng = random.Random(0)
    try:
        for _ in range(ROUNDS):
            before = len(acked)
            time.sleep(rng.uniform(0.2, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            per_round.append(len(acked) - before)
            proc = _start(store, port)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with open_store(store, create=False) as st:
        stored = set(st.read_events(types=["view"]).column("event_id").to_pylist())
    lost = [e for e in acked if e not in stored]
    print(f"\ncrash loop: {ROUNDS} SIGKILLs, {len(acked)} events acknowledged (per round {per_round}), "
          f"{len(lost)} lost")
    assert sum(1 for n in per_round if n > 0) >= ROUNDS - 2, per_round  # events were flowing at (almost) every kill
    assert lost == [], f"{len(lost)} of {len(acked)} acknowledged events lost"
