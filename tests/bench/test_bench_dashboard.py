"""``belong bench dashboard`` end to end on a tiny world (a real server): every page answered, the figures and the
same-run baseline in the JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_dashboard_json_on_a_tiny_world(tmp_path: Path) -> None:
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run(
        [belong, "bench", "dashboard", "--users", "600", "--communities", "60", "--store", str(tmp_path / "w"),
         "--repeats", "3", "--sample-users", "3", "--json"],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["world"]["users"] == 600 and out["model"] == "trained" and out["target_ms"] == 300.0
    pages = out["pages"]
    assert {"baseline /healthz", "overview", "live", "live.json", "users: one user (communities)",
            "users: one user, all 3 surfaces", "users: why not X", "users: what-if (sandbox)", "models",
            "experiments"} <= set(pages)
    for name, fig in pages.items():
        assert fig["n"] >= 2 and 0 < fig["p50_ms"] <= fig["p95_ms"] <= fig["max_ms"], name
    assert set(out["within_target_p95"]) == set(pages) - {"baseline /healthz"}
