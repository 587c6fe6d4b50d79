"""`belong features materialize / build / list` and `belong bench features` on a small store."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from features_helpers import DAY, T0, US, impression, log
from typer.testing import CliRunner

from belong.cli import app
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.features.online import MATERIALIZED_AT, RedisFeatureStore

runner = CliRunner()


@pytest.fixture()
def store_dir(tmp_path):
    path = tmp_path / "store"
    with open_store(path) as store:
        store.append(log(
            (T0, "join", "u1", "c1"),
            (T0 + 1, "join", "u2", "c1"),
            (T0 + 2, "friend_accept", "u1", "u2"),
            impression(T0 + DAY, "u3", "c1", "communities", "r1", 0),
            (T0 + 2 * DAY, "join", "u3", "c1"),
            (T0 + 3 * DAY, "message", "u3", "c1"),
        ))
    return path


@pytest.mark.redis
def test_materialize_into_redis_as_of_a_time(store_dir, redis_url):
    prefix = f"belong:test:{uuid.uuid4().hex}:"
    as_of = (T0 + DAY) / US
    result = runner.invoke(app, ["features", "materialize", "--store", str(store_dir), "--redis", redis_url,
                                 "--prefix", prefix, "--as-of", str(as_of), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["events"], report["users"], report["communities"]) == (3, 2, 1)  # u3 appears at as-of: excluded
    assert report["as_of_us"] == T0 + DAY
    online = RedisFeatureStore(redis_url, prefix=prefix)
    try:
        row = online.read("community", "c1")
        assert row["community_size"] == 2 and row[MATERIALIZED_AT] == T0 + DAY  # u3 joins later
        assert online.read("user", "u1")["user_friend_count"] == 1
    finally:
        online.clear()
        online.close()


def test_materialize_in_process_defaults_to_the_end_of_the_log(store_dir, monkeypatch):
    monkeypatch.delenv("BELONG_REDIS_URL", raising=False)
    from belong.settings import get_settings

    get_settings.cache_clear()
    result = runner.invoke(app, ["features", "materialize", "--store", str(store_dir), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["events"] == 6 and report["as_of_us"] == T0 + 3 * DAY + 1
    assert report["feature_store"] == "memory://"


def test_build_writes_a_parquet_training_set(store_dir, tmp_path):
    out = tmp_path / "train.parquet"
    result = runner.invoke(app, ["features", "build", "--store", str(store_dir), "--surface", "communities",
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows"], summary["positives"]) == (1, 1)
    table = pq.read_table(out)
    assert table["community_size"].to_pylist() == [2] and table["joined"].to_pylist() == [1]
    candidates = tmp_path / "candidates.parquet"
    pq.write_table(pa.table({"user_id": ["u3", "u3"], "item_id": ["c1", "c9"], "ts_us": [T0 + DAY] * 2,
                             "src_trending_score": [0.5, 0.25]}), candidates)
    result = runner.invoke(app, ["features", "build", "--store", str(store_dir), "--surface", "communities",
                                 "--out", str(out), "--candidates", str(candidates), "--json"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    assert table["src_trending_score"].to_pylist() == [0.5, 0.25] and table["joined"].to_pylist() == [1, 0]
    candidates.write_text("not parquet")
    result = runner.invoke(app, ["features", "build", "--store", str(store_dir), "--surface", "communities",
                                 "--out", str(out), "--candidates", str(candidates)])
    assert isinstance(result.exception, ValidationError) and result.exception.field == "candidates"


def test_list():
    result = runner.invoke(app, ["features", "list", "--json"])
    names = {f["name"] for f in json.loads(result.stdout)}
    assert {"user_activity_28d", "community_growth_7d", "uc_friends_inside", "uu_adamic_adar"} <= names


@pytest.mark.redis
def test_bench_against_redis(redis_url):
    result = runner.invoke(app, ["bench", "features", "--redis", redis_url, "--entities", "50",
                                 "--candidates", "20", "--requests", "5"])
    assert result.exit_code == 0, result.output
    bench = json.loads(result.stdout)
    assert bench["read_many"]["p50_ms"] > 0 and bench["baseline_one_read_per_entity"]["p50_ms"] > 0


def test_user_errors_exit_2_without_traceback(store_dir):
    cmd = [sys.executable, "-c", "from belong.cli import main; main()", "features", "materialize",
           "--store", str(store_dir), "--as-of", "yesterday-ish"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "as_of" in proc.stderr and "Traceback" not in proc.stderr
    cmd[-4:] = ["--store", str(store_dir), "--redis", "http://nope"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "redis" in proc.stderr and "Traceback" not in proc.stderr
