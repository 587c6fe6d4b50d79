"""``belong bench ray`` on an existing store and artifact, on a real local Ray cluster: a sample of people
(``limit``), the same-run in-process baseline, every Ray output checked against it, and the CPU and memory of the
whole process tree (the Ray workers' included) counted by :class:`belong.bench.meter.TreeMeter`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from belong.bench.meter import TreeMeter

REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")


def test_tree_meter_counts_a_child_process_cpu_and_memory() -> None:
    burn = "import time\nt = time.process_time()\nx = bytearray(200 * 2**20)\nwhile time.process_time() - t < 1.5: pass"
    with TreeMeter(interval=0.2) as meter:
        subprocess.run([sys.executable, "-c", burn], check=True)
    got = meter.figures()
    assert got["cpu_seconds_other_processes"] >= 1.2  # the child's CPU, sampled while it ran
    assert got["cpu_seconds"] >= got["cpu_seconds_other_processes"]
    assert got["peak_rss_sum_gb"] >= 0.2  # the child's 200 MiB buffer, summed with this process
    assert got["processes_peak"] >= 2 and len(got["load_average_start"]) == 3
    with pytest.raises(ValueError, match="interval"):
        TreeMeter(interval=0)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")
def test_bench_ray_on_an_existing_store_with_a_sample(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="the Ray engine needs ray[data,train]")
    import redis

    from belong.bench.ray_batch import bench_ray, simulate_store
    from belong.training.train import train

    stale = redis.Redis.from_url(REDIS_URL)
    stale.set("belong:bench:ray:inprocess:v0:communities:u1", b"[0, []]")  # as a killed earlier run leaves
    simulate_store(tmp_path / "store", 300, 40, seed=5)
    train(str(tmp_path / "store"), tmp_path / "models", ["communities"])
    report = bench_ray(0, [1, 2], tmp_path / "work", store=str(tmp_path / "store"), models=tmp_path / "models",
                       limit=80, redis_url=REDIS_URL, jobs=("score", "precompute"))
    assert report["world"]["active_people"] > 80 and report["limit"] == 80
    assert "train" not in report["jobs"]
    for job in ("score", "precompute"):
        rows = report["jobs"][job]
        assert list(rows) == ["inprocess", "ray_1", "ray_2"]
        for key, row in rows.items():
            assert "error" not in row, row
            assert row["people"] == 80 and row["lists"] == 80
            assert row["cpu_seconds"] > 0 and row["peak_pss_sum_gb"] > 0 and row["ms_per_list"] > 0
            assert row["seconds_per_million_people"] > 0
            if key == "inprocess":
                assert row["ratio_vs_inprocess"] == 1.0 and row["cluster_start_seconds"] == 0.0
            else:
                assert row["cluster_start_seconds"] > 0
                assert row["processes_peak"] > 2  # the cluster's processes were counted
                assert row["cpu_seconds_other_processes"] > 1.0  # the Ray workers' own CPU
    assert all(r["same_rows_as_inprocess"] for r in report["jobs"]["score"].values())
    pre = report["jobs"]["precompute"]
    for key, row in pre.items():
        assert row["same_lists_as_inprocess"], (key, row)
        assert row["lists_compared"] == 80 and row["lists_differing"] == 0, (key, row)
