"""``belong bench scale`` on a small world: every step runs as a real ``belong`` process and reports wall time and
peak memory; the API starts from the snapshot and from the whole log in the same run and both answer. ``belong
snapshot`` writes, verifies and refuses bad input (no timing assertions: figures are the command's)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from belong.eventlog import open_store
from belong.state import snapshot
from cli_runner import run_cli


@pytest.fixture(scope="module")
def scale_result(tmp_path_factory):
    from belong.bench.scale import bench_scale

    directory = tmp_path_factory.mktemp("scale")
    return bench_scale(300, 25, directory, ["simulate", "train", "snapshot", "serve"], seed=1, people=5,
                       timeout_s=900)


def test_every_step_reports_wall_time_and_peak_memory(scale_result):
    steps = scale_result["steps"]
    for name in ("simulate", "train", "snapshot_write", "snapshot_load", "serve_snapshot", "serve_log"):
        assert steps[name].get("exit_code", 0) == 0, steps[name]
        assert steps[name]["peak_rss_mb"] > 50, name
    assert steps["simulate"]["output"]["users"] == 300
    assert steps["train"]["seconds"] > 0 and steps["train"]["snapshot"]["position"] > 0
    for name in ("simulate", "train", "snapshot_write"):  # run_step: the command's CPU and the machine's load
        assert 0 < steps[name]["cpu_seconds"] < 20 * steps[name]["seconds"], name
        assert len(steps[name]["load_average"]) == 2 and min(steps[name]["load_average"]) >= 0, name
    assert steps["snapshot_load"]["output"]["tail_events"] == 0
    assert steps["snapshot_write"]["output"]["position"] == steps["train"]["snapshot"]["position"]
    assert set(scale_result["serve_start_ratio"]) == {"ready_seconds", "rss_at_ready"}
    per = scale_result["per_million_people"]
    # per million people above the interpreter's own memory: at 300 people train's peak may not rise above it
    assert per["baseline_mb"] > 50 and per["train_peak_gb"] >= 0 and per["serve_snapshot_ready_rss_gb"] >= 0


def test_the_api_starts_from_the_snapshot_and_from_the_log_and_answers(scale_result):
    snap, log = scale_result["steps"]["serve_snapshot"], scale_result["steps"]["serve_log"]
    assert snap["state_from"]["tail_events"] == 0 and snap["state_from"]["snapshot_position"] > 0
    assert log["state_from"] == "log"
    for start in (snap, log):
        assert start["ready_seconds"] > 0 and start["rss_at_ready_mb"] > 0
        assert start["status_codes"] == {"200": 15}
        assert set(start["first_requests"]) == {"communities", "people", "content"}


def test_a_second_run_reuses_the_world(scale_result):
    from belong.bench.scale import bench_scale

    again = bench_scale(300, 25, Path(scale_result["directory"]), ["simulate"], seed=1)
    assert "reused" in again["steps"]["simulate"]


def test_snapshot_command_writes_and_verifies(scale_result, tmp_path, monkeypatch, capsys):
    store = f"{scale_result['directory']}/store"
    code, out, err = run_cli(monkeypatch, capsys, "snapshot", "--store", store, "--out", str(tmp_path / "s"),
                             "--json")
    assert code == 0, err
    summary = orjson.loads(out)
    with open_store(store, create=False) as st:
        assert summary["position"] == st.position() and summary["counts"]["users"] == st.entity_counts()["users"]
    assert snapshot.same_store(tmp_path / "s", store)
    code, out, _ = run_cli(monkeypatch, capsys, "snapshot", "--store", store, "--out", str(tmp_path / "s"),
                           "--verify", "--json")
    assert code == 0 and orjson.loads(out)["position"] == summary["position"]
    code, out, _ = run_cli(monkeypatch, capsys, "snapshot", "--store", store, "--out", str(tmp_path / "s"), "--load")
    loaded = orjson.loads(out)
    assert code == 0 and loaded["tail_events"] == 0 and loaded["users"] == summary["counts"]["users"]
    assert loaded["rss_mb"] > 0
    code, _, err = run_cli(monkeypatch, capsys, "snapshot", "--store", store, "--out", str(tmp_path / "none"),
                           "--verify")
    assert code == 2 and "snapshot" in err
    code, _, err = run_cli(monkeypatch, capsys, "snapshot", "--store", str(tmp_path / "nostore"))
    assert code == 2 and "no belong store" in err


def test_bad_steps_are_refused(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "bench", "scale", "--steps", "simulate,fly", "--dir", str(tmp_path))
    assert code == 2 and "steps" in err
