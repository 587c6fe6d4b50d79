"""Dependency failures answer 200 marked degraded, and service recovers: a private Redis stopped and restarted
mid-run, and candidate sources that overrun their budget. Never the shared Redis on 6379."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serve_helpers import ADMIN_KEY, auth, free_port, private_redis, run_server

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
                                reason="redis-server / redis-cli not installed")


@pytest.fixture(scope="module")
def degrade_server(small_store: Path) -> Iterator[tuple[str, int]]:
    """A server on a private Redis (features materialised into it) whose sources budget is ~0: every cache miss
    overruns it."""
    port = free_port()
    with private_redis(port):
        env = {"BELONG_REDIS_URL": f"redis://127.0.0.1:{port}/0", "BELONG_BUDGET_SOURCES_MS": "0.001",
               "BELONG_BREAKER_S": "0.2", "BELONG_BUDGET_FEATURES_MS": "50"}
        with run_server(small_store, env, "--materialize") as (base, _):
            yield base, port


def _get(c: httpx.Client, user: str) -> dict:
    r = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 5},
              headers=auth(ADMIN_KEY))  # the admin sees the feature rows (user_features)
    assert r.status_code == 200, r.text
    return r.json()


def _until(c: httpx.Client, user: str, ok, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        body = _get(c, user)
        if ok(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_slow_sources_answer_from_fallback_then_from_cache(degrade_server: tuple[str, int]) -> None:
    base, _ = degrade_server
    with httpx.Client(base_url=base, timeout=30) as c:
        first = _get(c, "u40")
        assert first["degraded"] and first["degraded_reasons"] == ["sources_timeout"]
        assert first["items"] and {it["source"] for it in first["items"]} == {"fallback_popular"}
        # the run went on in the background and filled the cache: the next answers are the real list
        later = _until(c, "u40", lambda b: b["cache"] == "hit")
        assert later["cache"] == "hit" and not later["degraded"]
        assert "fallback_popular" not in {it["source"] for it in later["items"]}
        metrics = c.get("/metrics").text
        assert 'belong_fallbacks_total{reason="sources_timeout:popular"}' in metrics


def test_redis_stopped_mid_run_degrades_then_recovers(degrade_server: tuple[str, int]) -> None:
    base, port = degrade_server
    with httpx.Client(base_url=base, timeout=30) as c:
        users = ["u41", "u42", "u43"]
        for u in users:
            _until(c, u, lambda b: b["cache"] == "hit")
        healthy = _get(c, users[0])
        assert not healthy["degraded"] and healthy["user_features"]
        # stop the fixture's private Redis (the only one on this port)
        assert subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"],
                              capture_output=True).returncode in (0, 1)
        time.sleep(0.2)
        for i in range(30):
            t0 = time.perf_counter()
            body = _get(c, users[i % 3])
            assert time.perf_counter() - t0 < 2.0
            assert body["degraded"] and "features_unavailable" in body["degraded_reasons"]
            assert body["items"] and body["user_features"] == {}
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["features"] == "unavailable"
        assert 'belong_fallbacks_total{reason="features_unavailable"}' in c.get("/metrics").text
        with private_redis(port):  # Redis returns (empty: features read as their declared defaults)
            back = _until(c, users[1], lambda b: not b["degraded"], timeout_s=10)
            assert not back["degraded"] and back["items"]
            assert c.get("/readyz").json()["features"] == "ok"
