"""``belong demo --serve`` (what ``make run`` runs) end to end on a small world, without a terminal: every step
runs, the API starts on the trained artifact, and the demo's own check shows a posted join taking effect."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from serve_helpers import free_port


def test_demo_trains_serves_and_stops_without_a_terminal(tmp_path: Path) -> None:
    belong = str(Path(sys.executable).with_name("belong"))
    store = tmp_path / "demo"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "COLUMNS": "200"}
    done = subprocess.run([belong, "demo", "--store", str(store), "--users", "600", "--communities", "60",
                           "--serve", "--port", str(free_port())], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    err = " ".join(done.stderr.split())  # rich wraps long lines
    for step in ("1. simulate", "2. ingest", "3. store statistics", "4. train", "5. the API"):
        assert step in err
    assert (store / "models").is_dir() and any((store / "models").iterdir())
    assert "(artifact)" in err  # the server loaded the trained artifact
    assert "curl -X POST" in err and "/v1/recommendations/communities?user_id=" in err
    assert "-> 202" in err and "no longer shows it" in err
