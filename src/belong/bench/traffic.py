"""The realistic load of ``belong bench serve --traffic zipf``: every person eligible, visits heavy-tailed (a Zipf
law over a random order of all people: a few visit often, most once or never), no pre-warming, and events (joins,
leaves, friend accepts) posted at a steady rate while the load runs, so that cached lists are invalidated as on a
live platform."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np


def zipf_visits(users: list[str], n: int, s: float, rng: np.random.Generator) -> list[str]:
    """``n`` visits drawn from all ``users``: the person of popularity rank ``r`` visits with weight ``r**-s``."""
    order = rng.permutation(len(users))
    weights = np.arange(1, len(users) + 1, dtype=np.float64) ** -s
    ranks = rng.choice(len(users), size=n, p=weights / weights.sum())
    return [users[order[r]] for r in ranks]


def write_paths(path: Path, visits: list[str], k: int) -> Path:
    path.write_text("".join(f"/v1/recommendations/communities?user_id={u}&k={k}\n" for u in visits))
    return path


class EventPoster:
    """Posts events at ``rate`` per second (joins 50%, leaves of an earlier join 25%, friend accepts 25%) to
    ``POST /v1/events`` in a background thread, by people drawn from the same heavy-tailed visits."""

    def __init__(self, base: str, write_key: str, visitors: list[str], communities: list[str], rate: float,
                 seed: int, tag: str) -> None:
        self.base, self.key, self.rate, self.tag = base, write_key, rate, tag
        self.visitors, self.communities = visitors, communities
        self.rng = np.random.default_rng(seed)
        self.sent = self.accepted = self.failed = 0
        self.latency_ms: list[float] = []
        self.counts = {"join": 0, "leave": 0, "friend_accept": 0}
        self._joined: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _event(self, i: int) -> dict:
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        roll = self.rng.random()
        actor = self.visitors[int(self.rng.integers(len(self.visitors)))]
        if roll < 0.25 and self._joined:
            actor, target = self._joined.pop(int(self.rng.integers(len(self._joined))))
            kind = "leave"
        elif roll < 0.5:
            target = self.visitors[int(self.rng.integers(len(self.visitors)))]
            kind = "friend_accept" if target != actor else "join"
            if kind == "join":
                target = self.communities[int(self.rng.integers(len(self.communities)))]
        else:
            kind = "join"
            target = self.communities[int(self.rng.integers(len(self.communities)))]
        if kind == "join":
            self._joined.append((actor, target))
        self.counts[kind] += 1
        return {"event_id": f"bench-{self.tag}-{i}", "ts": ts, "type": kind, "actor": actor, "target": target}

    def _run(self) -> None:
        start, i = time.perf_counter(), 0
        with httpx.Client(base_url=self.base, timeout=10.0,
                          headers={"Authorization": f"Bearer {self.key}"}) as client:
            while not self._stop.is_set():
                due = start + i / self.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    self._stop.wait(delay)
                    continue
                event = self._event(i)
                i += 1
                self.sent += 1
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/events", json={"events": [event]})
                    ok = r.status_code == 202
                except httpx.HTTPError:
                    ok = False
                self.latency_ms.append((time.perf_counter() - t0) * 1e3)
                self.accepted += ok
                self.failed += not ok

    def __enter__(self) -> EventPoster:
        self._thread = threading.Thread(target=self._run, name="bench-events", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def report(self) -> dict:
        lat = np.asarray(self.latency_ms) if self.latency_ms else np.zeros(1)
        return {"rate": self.rate, "sent": self.sent, "accepted": self.accepted, "failed": self.failed,
                "by_type": dict(self.counts), "p99_ms": round(float(np.percentile(lat, 99)), 2)}
