"""Dynamic batching of the cold path (:class:`belong.serve.engine.Batcher`, ``BELONG_BATCH_MAX``) and the batch
impressions route (``POST /v1/impressions/batch``): concurrent requests made together get the answers each gets
alone; a batch of shown lists is stored all or none. Real pipelines, a real server process; no mocks."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from belong.domain import Surface
from belong.pipeline import Request
from serve_helpers import WRITE_KEY, auth, run_server


@pytest.fixture(scope="module")
def fitted() -> object:
    from belong import surfaces
    from belong.simulate import simulate_world
    from belong.state import from_world

    return surfaces.load("communities").fit(from_world(simulate_world(300, 40, 5)))


def test_a_batch_answers_as_each_request_alone(fitted: object) -> None:
    from belong.serve.engine import Batcher

    pipe = fitted
    users = [f"u{i}" for i in range(24)]
    reqs = [Request(u, Surface.COMMUNITIES, k=5) for u in users]
    executor = ThreadPoolExecutor(2)
    batcher = Batcher(executor, max_batch=8)

    async def all_at_once() -> list:
        return list(await asyncio.gather(*(batcher.submit(pipe, r, 50) for r in reqs)))  # type: ignore[arg-type]

    together = asyncio.run(all_at_once())
    alone = [pipe.candidates(r, depth=50) for r in reqs]  # type: ignore[attr-defined]
    assert batcher.runs == 24 and batcher.batches < 24  # they did go together (at most 8 a batch)
    for t, a in zip(together, alone, strict=True):
        assert [(m.item, s) for m, s in t.ranked] == [(m.item, s) for m, s in a.ranked]
    # an unknown user fails only itself: the batch is made again one request at a time

    async def with_a_bad_one() -> list:
        bad = Request("nobody-here", Surface.COMMUNITIES, k=5)
        return list(await asyncio.gather(*(batcher.submit(pipe, r, 50) for r in [reqs[0], bad, reqs[1]]),  # type: ignore[arg-type]
                                         return_exceptions=True))

    got = asyncio.run(with_a_bad_one())
    assert isinstance(got[1], Exception) and not isinstance(got[0], Exception) and not isinstance(got[2], Exception)
    assert [(m.item, s) for m, s in got[2].ranked] == [(m.item, s) for m, s in alone[1].ranked]
    executor.shutdown()


@pytest.fixture(scope="module")
def cold_server(small_store: Path) -> object:
    """No candidate cache (every request runs the cold path), batches of at most 16."""
    with run_server(small_store, {"BELONG_BUDGET_SOURCES_MS": "600000", "BELONG_CANDIDATE_TTL_S": "0",
                                  "BELONG_BATCH_MAX": "16"}) as (base, _):
        yield base


def test_concurrent_requests_get_the_answers_they_get_alone(cold_server: str) -> None:
    users = [f"u{i}" for i in range(40)]

    def ask(c: httpx.Client, u: str) -> list:
        r = c.get("/v1/recommendations/communities", params={"user_id": u, "k": 6})
        assert r.status_code == 200
        return [(it["id"], it["score"], it["propensity"]) for it in r.json()["items"]]

    with httpx.Client(base_url=cold_server, timeout=120) as c:
        alone = [ask(c, u) for u in users]
    with httpx.Client(base_url=cold_server, timeout=120, limits=httpx.Limits(max_connections=16)) as c, \
            ThreadPoolExecutor(16) as pool:
        together = list(pool.map(lambda u: ask(c, u), users))
    assert together == alone and any(alone)


def test_impression_lists_in_one_call(client: httpx.Client) -> None:
    def one(i: int, prop: float = 0.5) -> dict:
        return {"request_id": f"batch-test-{i}", "user_id": f"u{i}", "surface": "communities", "ts": 1_700_000_000,
                "items": [{"item_id": "c1", "position": 0, "propensity": prop},
                          {"item_id": "c2", "position": 1, "propensity": 1.0}]}

    body = {"lists": [one(i) for i in range(3)]}
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json=body)
    assert r.status_code == 202 and r.json() == {"accepted": 6, "duplicates": 0}
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json=body)
    assert r.json() == {"accepted": 0, "duplicates": 6}
    # a bad list is named, and nothing of the call is stored
    bad = {"lists": [one(10), {**one(11), "surface": "moons"}]}
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json=bad)
    assert r.status_code == 422 and r.json()["field"] == "lists[1].surface"
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json={"lists": [one(10)]})
    assert r.json() == {"accepted": 2, "duplicates": 0}
    # the same slot said twice differently, across lists
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json={"lists": [one(20), one(20, 0.25)]})
    assert r.status_code == 422 and r.json()["field"] == "lists[1]"
    r = client.post("/v1/impressions/batch", headers=auth(WRITE_KEY), json={"lists": []})
    assert r.status_code == 422 and r.json()["field"] == "lists"
    assert client.post("/v1/impressions/batch", json=body).status_code == 401
