"""What the loop talks to when it serves people: a small backend interface, so the same day loop
(:mod:`belong.loop.runner`) drives belong in process or over HTTP (``loop/http.py``).

The loop owns the simulated world: its own :class:`~belong.state.WorldState` is the truth of who is a member and who
is friends with whom (the response model reads it), and the loop applies every event it makes to it. A backend is
belong as the simulated people see it: it trains on the world so far, serves lists, and is told what was shown and
what people did.

* ``retrain(day, state)``: fit (or train and hot-swap) every arm on the state so far; returns a JSON-able record
  (at least ``{"day": day}``; timings go under keys ending in ``_s``).
* ``serve(arm, users, day)``: each person's list under arm ``arm`` (an index into the scenario's arms), as
  :class:`Slate` s, in the order of ``users`` (sim person indices). A person may be asked for under an arm other
  than their own (the truth needs every arm's list).
* ``record(events, impressions)``: what happened since the last call, in time order — the events the loop made
  (joins, leaves; already applied to the loop's state) and the impressions of the lists people saw
  (:class:`Impression`, the body of ``POST /v1/impressions``).
* ``stats()``: JSON-able figures about the backend (latency, status counts, calls).
* ``close()``: release what it holds (a server process, a store).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np

from belong.domain import Event, Surface
from belong.pipeline import Request


class Slate(NamedTuple):
    """One served list: the sim indices of the communities shown (in order), each one's propensity (the probability
    that the policy put it at its position: 1 outside an exploration slot), and the request id."""

    comms: np.ndarray  # int64
    propensity: np.ndarray  # float64, same length
    request_id: str


def slate_of(chosen: list[tuple[Any, Any]], comm_sim: Any, uid: str, arm: int, day: int) -> Slate:
    """The :class:`Slate` of a pipeline's chosen list ((merged candidate, score) pairs) for ``uid``: each community
    as its sim index (``comm_sim``, by the state's community index) with its propensity (1 where none is set)."""
    comms = np.fromiter((comm_sim[m.item] for m, _ in chosen), np.int64, len(chosen))
    prop = np.fromiter((float(m.features.get("propensity", 1.0)) for m, _ in chosen), np.float64, len(chosen))
    return Slate(comms, prop, f"loop-d{day}-a{arm}-{uid}")


@dataclass(frozen=True)
class Impression:
    """One list a person saw: ``POST /v1/impressions``'s body (items as community ids with position and
    propensity)."""

    user_id: str
    request_id: str
    ts_us: int
    items: tuple[tuple[str, int, float], ...]  # (community id, position, propensity)

    def body(self, surface: str = "communities") -> dict[str, Any]:
        return {"request_id": self.request_id, "user_id": self.user_id, "surface": surface, "ts": self.ts_us / 1e6,
                "items": [{"item_id": c, "position": p, "propensity": q} for c, p, q in self.items]}


class Backend(Protocol):
    def retrain(self, day: int, state: Any) -> dict[str, Any]: ...

    def serve(self, arm: int, users: list[int], day: int) -> list[Slate]: ...

    def record(self, events: list[Event], impressions: list[Impression]) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class InProcessBackend:
    """The arms' pipelines called directly on the loop's own state (no copy: recorded events are already in it).
    Serving is batched (:meth:`~belong.pipeline.pipeline.Pipeline.select_batch`: the answers of one request each)."""

    def __init__(self, arm_surfaces: list[str], uids: list[str], comm_sim: np.ndarray, k: int,
                 batch: int = 512) -> None:
        from belong import surfaces

        self.specs = arm_surfaces
        self.uids = uids
        self.comm_sim = comm_sim  # state community index -> sim index
        self.k = k
        self.batch = batch
        self.surfaces = surfaces
        self.pipelines: list[Any] = [None] * len(arm_surfaces)
        self.counts = {"served": 0, "events": 0, "impressions": 0}

    def retrain(self, day: int, state: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"day": day}
        t0 = time.perf_counter()
        for i, spec in enumerate(self.specs):
            t = time.perf_counter()
            self.pipelines[i] = self.surfaces.load(spec).fit(state)
            out[f"arm{i}_s"] = round(time.perf_counter() - t, 3)
        out["seconds"] = round(time.perf_counter() - t0, 3)
        return out

    def serve(self, arm: int, users: list[int], day: int) -> list[Slate]:
        pipe = self.pipelines[arm]
        out: list[Slate] = []
        for lo in range(0, len(users), self.batch):
            chunk = users[lo: lo + self.batch]
            reqs = [Request(self.uids[u], Surface.COMMUNITIES, k=self.k, explain=False, seed=day) for u in chunk]
            for u, chosen in zip(chunk, pipe.select_batch(reqs), strict=True):
                out.append(slate_of(chosen, self.comm_sim, self.uids[u], arm, day))
        self.counts["served"] += len(users)
        return out

    def record(self, events: list[Event], impressions: list[Impression]) -> None:
        self.counts["events"] += len(events)
        self.counts["impressions"] += sum(len(i.items) for i in impressions)

    def stats(self) -> dict[str, Any]:
        return {"mode": "direct", **self.counts}

    def close(self) -> None:
        self.pipelines = [None] * len(self.specs)
