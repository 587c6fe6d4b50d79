"""``belong evaluate`` / ``belong bench evaluate`` end to end on tiny files written here (real loaders, real
models), plus the user errors that must exit with code 2."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from eval_helpers import TEST_ITEM, TRAIN_PAIRS

from cli_runner import run_cli


@pytest.fixture()
def lightgcn_dir(tmp_path: Path) -> Path:
    """Two clusters of 4 users x 3 items (items 0-2 and 3-5); each user is tested on its cluster's third item."""
    train, test = [], []
    for c in (0, 1):
        for j, (pair, held) in enumerate(zip(TRAIN_PAIRS, TEST_ITEM, strict=True)):
            u = 4 * c + j
            train.append(f"{u} {pair[0] + 3 * c} {pair[1] + 3 * c}")
            test.append(f"{u} {held + 3 * c}")
    d = tmp_path / "tiny-split"
    d.mkdir()
    (d / "train.txt").write_text("\n".join(train) + "\n")
    (d / "test.txt").write_text("\n".join(test) + "\n")
    return d


def test_evaluate_several_models_json_and_report(lightgcn_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    report = tmp_path / "out" / "report.html"
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "--dataset", f"lightgcn:{lightgcn_dir}",
                             "--model", "itemknn,most-popular", "--model", "ease", "--k", "1,3",
                             "--param", "ease.l2=1", "--report", str(report), "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["dataset"] == "tiny-split" and result["protocol"]["name"] == "given"
    assert result["split"]["train_rows"] == 16 and result["split"]["test_rows"] == 8
    assert [r["model"] for r in result["results"]] == ["itemknn", "most-popular", "ease"]
    ease = result["results"][2]
    assert ease["params"]["l2"] == 1
    # co-occurrence models find every user's missing cluster item first
    assert result["results"][0]["metrics"]["recall@1"] == pytest.approx(1.0)
    assert ease["metrics"]["recall@1"] == pytest.approx(1.0)
    assert set(ease["metrics"]) >= {"recall@3", "ndcg@3", "hr@1", "mrr@3", "map@3", "precision@3",
                                    "coverage@3", "novelty@3", "arp@3", "ild@3"}
    assert ease["ci95"]["ndcg@3"][0] <= ease["metrics"]["ndcg@3"] <= ease["ci95"]["ndcg@3"][1]
    assert ease["fit_seconds"] >= 0 and ease["score_seconds"] >= 0 and "warm" in ease["segments"]
    assert set(result["paired"]) == {"itemknn vs most-popular", "itemknn vs ease", "most-popular vs ease"}
    html = report.read_text()
    assert html.startswith("<!doctype html>") and html.count("data:image/png;base64,") == 3
    for name in ("itemknn", "most-popular", "ease"):
        assert name in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_evaluate_one_model_table_and_json(lightgcn_dir: Path, monkeypatch, capsys) -> None:
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "toppop",
                           "--protocol", "random-holdout", "--protocol-param", "fraction=0.4", "--json")
    assert code == 0
    result = orjson.loads(out)
    assert result["model"] == "most-popular" and "results" not in result
    assert result["protocol"] == {"name": "random-holdout", "fraction": 0.4, "seed": 0}
    assert result["ks"] == [10, 20, 50] and "recall@20" in result["metrics"]
    code, out, _ = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "ease")
    assert code == 0 and "recall@20" in out and "ease" in out


def test_evaluate_friendship_graph_with_all_graph_models(tmp_path: Path, monkeypatch, capsys) -> None:
    edges = tmp_path / "edges.csv"
    rows = ["node_1,node_2"] + [f"{a},{b}" for a in range(12) for b in range(a + 1, 12) if (a + b) % 3]
    edges.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-d", f"edges:{edges}", "-m", "all", "--k", "5",
                             "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["protocol"] == {"name": "hide-edges", "fraction": 0.2, "seed": 0}
    names = [r["model"] for r in result["results"]]
    assert {"common-neighbours", "adamic-adar", "resource-allocation"} <= set(names)
    assert all("recall@5" in r["metrics"] for r in result["results"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0"], "k"),
        (["--k", "ten"], "k"),
        (["--protocol", "sideways"], "protocol"),
        (["--protocol-param", "nope"], "protocol-param"),
        (["--protocol-param", "bogus=1"], "bogus"),
        (["--param", "ease-l2"], "param"),
        (["--param", "itemknn.k=5"], "not among --model"),
        (["--param", "ease.l3=5"], "ease"),
    ],
)
def test_bad_input_exits_2(lightgcn_dir: Path, monkeypatch, capsys, args: list[str], message: str) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "ease",
                             *args, "--json")
    assert code == 2 and message in err and out == ""
    assert "Traceback" not in err


def test_bad_dataset_and_model_exit_2(lightgcn_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "-d", "lightgcn:/nonexistent/dir", "-m", "ease")
    assert code == 2 and "not found" in err
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "nosuch")
    assert code == 2 and "unknown model" in err
    code, _, err = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "ease",
                           "--protocol", "hide-edges")
    assert code == 2 and "friendship graph" in err


def test_bench_evaluate_json(lightgcn_dir: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "bench", "evaluate", "--dataset", f"lightgcn:{lightgcn_dir}",
                             "--models", "ease,itemknn", "--k", "3", "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["protocol"] == "given" and result["k"] == 3 and result["users"] == 8
    for name in ("ease", "itemknn"):
        r = result["models"][name]
        assert r["identical_recall"] and r["recall"] == r["reference_recall"]
        assert r["seconds"] > 0 and r["reference_seconds"] > 0
        assert r["speedup"] == pytest.approx(r["reference_seconds"] / r["seconds"], rel=1e-2)


def test_evaluate_with_tuning_records_the_tuned_values(lightgcn_dir: Path, monkeypatch, capsys) -> None:
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-d", f"lightgcn:{lightgcn_dir}", "-m", "ease,itemknn",
                             "--param", "itemknn.k=7", "--k", "3", "--tune", "4", "--json")
    assert code == 0, err
    ease, itemknn = orjson.loads(out)["results"]
    for r in (ease, itemknn):
        assert r["tuned"]["trials"] == 4 and r["tuned"]["validation"] == "random-holdout"
        assert r["tuned"]["metric"] == "ndcg@3" and r["params_source"] == "tuned here (4 trials)"
        assert r["params"] == {**r["params"], **r["tuned"]["params"]}  # the tuned values are the ones evaluated
    assert 10.0 <= ease["tuned"]["params"]["l2"] <= 5000.0  # inside the searched space
    assert itemknn["params"]["k"] == 7  # explicit --param values stay fixed while the rest is searched


def test_evaluate_a_store_defaults_to_temporal(tmp_path: Path, monkeypatch, capsys) -> None:
    from belong.domain import Event, EventType, TargetKind
    from belong.eventlog import open_store

    events = []
    for n in range(40):  # 10 users join 4 of 6 communities over time; the last 20% of joins are the test part
        u, c = n % 10, (n // 10 + n % 3) % 6
        events.append(Event(event_id=f"e{n}", ts_us=1_000_000 * (n + 1), type=EventType.JOIN, actor=f"u{u}",
                            target=f"c{c}", target_kind=TargetKind.COMMUNITY))
    events.append(Event(event_id="late", ts_us=100_000_000, type=EventType.JOIN, actor="newcomer", target="c1",
                        target_kind=TargetKind.COMMUNITY))
    store = tmp_path / "store"
    with open_store(store) as s:
        s.append(events)
    code, out, err = run_cli(monkeypatch, capsys, "evaluate", "-d", str(store), "-m", "toppop", "--k", "2", "--json")
    assert code == 0, err
    result = orjson.loads(out)
    assert result["protocol"]["name"] == "temporal" and result["protocol"]["test_fraction"] == 0.2
    split = result["split"]
    assert split["cold_test_users"] == 1 and result["segments"]["cold"]["users"] == 1
    dropped = split["dropped_unseen_items"] + split["dropped_repeat_pairs"]
    assert split["train_rows"] + split["test_rows"] + dropped == 41


def test_bench_evaluate_a_pipeline_batched_against_one_request_per_user(tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    """The batch path gives the per-request path's lists and metrics exactly, timed in the same run."""
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate_world

    store = tmp_path / "sim"
    with open_store(store) as st:
        write_world(st, simulate_world(300, 30, seed=4), progress=False)
    code, out, err = run_cli(monkeypatch, capsys, "bench", "evaluate", "--dataset", str(store), "--pipeline",
                             "communities", "--users", "40", "--batch-size", "16", "--k", "10", "--json")
    assert code == 0, err
    r = orjson.loads(out)
    assert r["protocol"] == "temporal" and r["surface"] == "communities" and r["users_timed"] == 40
    assert r["identical_lists"] and r["max_abs_metric_diff"] <= 1e-9
    assert r["metrics"] == r["reference_metrics"] and r["metrics"]["recall@10"] > 0
    assert r["speedup"] == pytest.approx(r["per_request_ms_per_user"] / r["batch_ms_per_user"], rel=0.05)
    assert r["cpu_speedup"] == pytest.approx(r["per_request_cpu_ms_per_user"] / r["batch_cpu_ms_per_user"], rel=0.05)
    code, _, err = run_cli(monkeypatch, capsys, "bench", "evaluate", "--dataset", str(store), "--pipeline",
                           "communities", "--users", "-1")
    assert code == 2 and "users" in err and "Traceback" not in err
