"""``belong bench serve`` end to end on a tiny world (real Redis, real server and bare processes): the JSON has
the figures the issue asks for, the trained ranker served, per-rate CPU and the per-stage breakdown."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_serve_json_on_a_tiny_world(redis_url: str, tmp_path: Path) -> None:
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run(
        [belong, "bench", "serve", "--users", "600", "--communities", "60", "--store", str(tmp_path / "w"),
         "--redis", redis_url, "--rates", "40,80", "--seconds", "1", "--working-set", "40", "--p99-ms", "1000",
         "--json"], capture_output=True, text=True, timeout=900, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    for key in ("rps", "p50_ms", "p99_ms", "bare_rps", "bare_p99_ms"):
        assert key in out
    assert out["rps"] == 80 and out["bare_rps"] == 80 and out["rps_over_bare"] == 1.0
    assert out["model"]["artifact"] == "trained" and "LightGBM" in out["model"]["surface"]
    assert all(r["errors"] == 0 and r["degraded"] == 0 for r in out["runs"])
    assert all(r.get("server_cpu_ms_per_request", 0) > 0 for r in out["runs"] + out["bare_runs"])
    stages = set(out["stage_ms_mean_under_load"])
    # the load sends no admin key: its answers show no feature rows, so none reads them (engine.py)
    assert {"rules", "select", "hydrate", "respond"} <= stages and "features" not in stages
    assert out["payload_bytes"] > 0 and out["world"]["users"] == 600
    assert out["feature_rows"] == "exact"  # the server's rows are invalidated by Redis (CLIENT TRACKING)
    # rows are read for the admin's debug traces only (the load's public answers read none): one user row per traced
    # user, and the row cache serves most of their candidates' rows
    rows = out["feature_row_lookups"]
    assert rows["user"]["hit"] + rows["user"]["miss"] == 40 and rows["community"]["hit"] > rows["community"]["miss"]


def test_the_bench_retrains_an_artifact_of_another_feature_set(tmp_path) -> None:
    from belong.bench.serve import _current_features
    from belong.ranking.dataset import feature_names
    from belong.training.artifact import write_manifest

    sources = ["co_membership", "trending"]
    for name, features, current in (("now", feature_names(sources), True), ("old", feature_names(sources)[:-2], False)):
        d = tmp_path / name
        d.mkdir()
        write_manifest(d, {"version": name, "surfaces": {"communities": {"ranker": {"features": features,
                                                                                  "sources": sources}}}})
        assert _current_features(d) is current
    assert _current_features(tmp_path / "missing") is False
