"""``belong bench serve --traffic zipf``: the visit law against scipy's Zipf distribution, and the bench end to end on
a tiny world (real Redis, server, bare server, event poster and precompute job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

from belong.bench.traffic import zipf_visits


def test_visits_follow_scipys_zipf_law_over_every_person() -> None:
    users = [f"u{i}" for i in range(1000)]
    visits = zipf_visits(users, 200_000, 1.0, np.random.default_rng(0))
    counts = np.sort(np.bincount([int(v[1:]) for v in visits], minlength=1000))[::-1]
    expected = stats.zipfian(1.0, 1000).pmf(np.arange(1, 11)) * len(visits)
    assert np.allclose(counts[:10], expected, rtol=0.08), (counts[:10], expected)
    assert (counts > 0).mean() > 0.95  # every person eligible: nearly all visit at least once in 200k
    assert counts[:10].sum() / len(visits) > 0.35  # heavy-tailed: ten people make over a third of the visits


def test_bench_serve_zipf_on_a_tiny_world(redis_url: str, tmp_path: Path) -> None:
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run(
        [belong, "bench", "serve", "--users", "600", "--communities", "60", "--store", str(tmp_path / "w"),
         "--redis", redis_url, "--rates", "40,80", "--seconds", "1", "--working-set", "40", "--p99-ms", "2000",
         "--traffic", "zipf", "--events-per-s", "10", "--json"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["traffic"] == "zipf" and out["bare_rps"] == 80 and out["rps"] in (0.0, 40.0, 80.0)
    stored = out["precomputed"]  # the day's active people: every person the load visits, drawn first
    assert stored["scope"].startswith("the day's active people") and stored["stored_before"] == 0
    assert stored["lists"] == stored["users"] == stored["visitors"] < 600
    assert out["precomputed_reads"]["reads"]["hit"] > 0
    # the lists the load's events marked stale, refreshed by the job after it (the server ran no live path for them)
    reads, refreshed = out["precomputed_reads"], out["stale_refresh"]
    assert refreshed["people"] == refreshed["lists"] and refreshed["job_seconds"] > 0
    assert reads["marked_stale"] >= reads["reads"]["stale"] >= 0 and refreshed["people"] > 0
    events = out["events"]
    assert events["accepted"] > 0 and events["failed"] == 0 and events["by_type"]["join"] > 0
    assert all(r["errors"] == 0 and r["non_200"] == 0 for r in out["runs"])
    assert out["warm"]["rps"] == 80 and out["warm"]["working_set_users"] == 40  # the old figure, beside
    assert out["distinct_users_per_rate"]["40.0"] > 1
    # the server's collector during the sweep: young collections ran, full ones were held off (belong.serve.heap)
    assert out["gc"]["full_collections_held"] == 1.0
    assert out["gc"]["generation_0"] > 0 and out["gc"]["generation_2"] == 0
