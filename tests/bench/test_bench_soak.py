"""``belong bench soak`` end to end on a tiny world (real server process, real load generator, events flowing): the
JSON has per-window figures, the RSS slope (checked against scipy's least squares), errors and p99 drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

BELONG = str(Path(sys.executable).with_name("belong"))
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


@pytest.mark.slow
def test_bench_soak_json_on_a_tiny_world(tmp_path: Path) -> None:
    done = subprocess.run(
        [BELONG, "bench", "soak", "--json", "--seconds", "10", "--windows", "4", "--held-rate", "60",
         "--users", "300", "--communities", "30", "--working-set", "100", "--event-rate", "5",
         "--store", str(tmp_path / "w")], capture_output=True, text=True, timeout=600, env=ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert out["rate"] == 30 and out["rate_from"] == "half the given held rate"
    rows = out["windows"]
    assert len(rows) == 4 and all(r["sent"] > 0 and r["rss_mb"] > 0 for r in rows)
    steady = rows[1:]
    ref = stats.linregress([r["t_s"] / 3600 for r in steady], [r["rss_mb"] for r in steady]).slope
    assert out["rss_slope_mb_per_hour"] == pytest.approx(ref, abs=0.01)
    assert out["p99_ms"]["drift"] == pytest.approx(rows[-1]["p99_ms"] - rows[0]["p99_ms"], abs=1e-3)
    assert out["requests"]["sent"] == sum(r["sent"] for r in rows)
    assert out["requests"]["errors"] == 0 and out["requests"]["non_200"] == 0
    assert out["events"]["accepted"] > 0 and out["events"]["errors"] == 0 and out["events"]["non_202"] == 0
    assert out["server_alive_at_end"] is True


def test_bench_soak_bad_input_exits_2(tmp_path: Path) -> None:
    for args, field in ((["--seconds", "0"], "seconds"), (["--rate", "-5"], "rate"),
                        (["--event-batch", "0"], "event-batch")):
        done = subprocess.run([BELONG, "bench", "soak", *args, "--store", str(tmp_path / "w")],
                              capture_output=True, text=True, timeout=120, env=ENV)
        assert done.returncode == 2 and field in done.stderr, done.stderr
