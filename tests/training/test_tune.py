"""``belong train --tune-budget``: sources and ranker tuned on validation cuts of the store's own data within the
budget, the values recorded in the manifest and reused while the data has not drifted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import orjson
import pytest

from belong.cli import main
from belong.datasets import write_world
from belong.eventlog import open_store
from belong.simulate import simulate_world
from belong.training import tune
from belong.training.artifact import read_manifest

SURFACE = """
surface = "communities"
[[sources]]
type = "co_membership"
model = "ease"
ease_l2 = 300.0
k = 100
[[sources]]
type = "ials_ann"
factors = 16
iterations = 5
k = 100
[[sources]]
type = "trending"
k = 50
[[filters]]
type = "safety_rules"
[scorer]
type = "lgbm_ranker"
users = 200
rounds = 30
min_data_in_leaf = 20
threads = 1
[selector]
type = "top_k"
"""
BUDGET = 4.0


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["belong", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("tune")
    store = root / "sim"
    with open_store(store) as st:
        write_world(st, simulate_world(400, 40, seed=11), progress=False)
    surface = root / "tuned.toml"
    surface.write_text(SURFACE, "utf-8")
    return str(store), surface, root / "models"


def _train(setup, capsys, *extra: str) -> dict:
    store, surface, out = setup
    code, stdout, err = _cli(["train", "--store", store, "--out", str(out), "--surface", str(surface), "--json",
                              *extra], capsys)
    assert code == 0, err
    return json.loads(stdout)


def test_tuned_within_budget_recorded_then_reused_then_retuned_on_drift(setup, capsys):
    first = _train(setup, capsys, "--tune-budget", str(BUDGET))
    rec = first["tuning"]
    assert rec["mode"] == "tuned" and rec["reason"] == "no tuned artifact before"
    surface = rec["surfaces"]["tuned"]
    ease, ials, ranker = surface["sources"]["co_membership"], surface["sources"]["ials_ann"], surface["ranker"]
    # the budget is honoured: no trial starts after a task's share, so each task overruns by at most its running
    # trial (plus optuna's and the validation cut's own bit)
    assert rec["seconds"] <= BUDGET + sum(r["longest_trial_seconds"] + 1.0 for r in (ease, ials, ranker))
    assert set(ease["params"]) == {"ease_l2"} and ease["model"] == "ease"
    assert set(ials["params"]) == {"factors", "regularization", "alpha", "iterations"}
    assert set(ranker["params"]) == {"num_leaves", "learning_rate", "min_data_in_leaf"}
    for r in (ease, ials, ranker):
        assert r["trials"] >= 1 and r["value"] >= r["start_value"]  # the surface's own values are the first trial
        assert r["metric"] == "ndcg@20"
    assert ease["trials"] + ials["trials"] + ranker["trials"] > 3  # it searched, not just the start values
    # the artifact's pipeline carries the chosen values (what serving loads)
    pipeline = read_manifest(Path(first["path"]))["surfaces"]["communities"]["pipeline"]
    by_type = {s["type"]: s for s in pipeline["sources"]}
    assert by_type["co_membership"]["ease_l2"] == ease["params"]["ease_l2"]
    assert by_type["ials_ann"]["factors"] == ials["params"]["factors"]
    assert pipeline["scorer"]["num_leaves"] == ranker["params"]["num_leaves"]
    # the trials are compared on their split; the kept ranker's guard is the out-of-fold test over every list
    guard = read_manifest(Path(first["path"]))["surfaces"]["communities"]["ranker"]["metrics"]["guard"]
    assert guard["folds"] == 5 and guard["lists"] == ranker["lists"]

    second = _train(setup, capsys, "--tune-budget", str(BUDGET))
    rec2 = second["tuning"]
    assert rec2["mode"] == "reused" and rec2["reused_from"] == Path(first["path"]).name and rec2["drift"] == 0
    assert rec2["surfaces"] == rec["surfaces"] and rec2["seconds"] == 0
    pipeline2 = read_manifest(Path(second["path"]))["surfaces"]["communities"]["pipeline"]
    assert pipeline2["sources"] == pipeline["sources"] and pipeline2["scorer"] == pipeline["scorer"]

    # the data as recorded was a third smaller: more than the 25% threshold, so the next run tunes again
    manifest_path = Path(second["path"]) / "manifest.json"
    manifest = orjson.loads(manifest_path.read_bytes())
    manifest["tuning"]["fingerprint"]["memberships"] = int(rec["fingerprint"]["memberships"] / 1.5)
    manifest_path.write_bytes(orjson.dumps(manifest))
    third = _train(setup, capsys, "--tune-budget", "0")
    assert third["tuning"]["mode"] == "tuned" and "drifted" in third["tuning"]["reason"]
    assert third["tuning"]["drift"] == pytest.approx(0.5, abs=0.01)

    spent = third["tuning"]["surfaces"]["tuned"]  # a zero budget: no source trial; the ranker's own fit only
    assert all(r == {"skipped": "budget spent"} for r in spent["sources"].values())
    assert spent["ranker"]["trials"] == 1 and spent["ranker"]["params"] == {
        "num_leaves": 31, "learning_rate": 0.05, "min_data_in_leaf": 20}
    forced = _train(setup, capsys, "--tune-budget", "0", "--retune")
    assert forced["tuning"]["mode"] == "tuned" and forced["tuning"]["reason"] == "--retune"


def test_a_negative_budget_is_refused(setup, capsys):
    store, surface, out = setup
    code, stdout, err = _cli(["train", "--store", store, "--out", str(out), "--tune-budget", "-1"], capsys)
    assert code == 2 and "tune_budget" in err and "Traceback" not in err and stdout == ""


def test_drift_is_the_largest_relative_change():
    old = {"users": 100, "communities": 10, "memberships": 1000}
    assert tune.drift(dict(old), old) == 0
    assert tune.drift({"users": 120, "communities": 10, "memberships": 900}, old) == pytest.approx(0.2)
    assert tune.drift({"users": 100, "communities": 10, "memberships": 1000, "content": 5}, old) == 1.0
    assert tune.drift({"users": 5}, {"users": 0}) == 5.0


def test_recorded_values_go_only_to_the_same_kind_of_source():
    from belong.pipeline.pipeline import Pipeline

    pipeline = Pipeline.from_toml(SURFACE.replace('model = "ease"\nease_l2 = 300.0', 'model = "itemknn"'))
    record = {"sources": {"co_membership": {"model": "ease", "params": {"ease_l2": 55.0}},
                          "ials_ann": {"model": "ials", "params": {"factors": 8, "regularization": 0.5,
                                                                   "alpha": 2.0, "iterations": 3}},
                          "gone": {"model": "ease", "params": {"ease_l2": 1.0}},
                          "trending": {"skipped": "budget spent"}},
              "ranker": {"params": {"num_leaves": 9, "learning_rate": 0.1, "min_data_in_leaf": 12}}}
    tune.apply(pipeline, record)
    by_name = {s.name: s.config for s in pipeline.sources}
    assert by_name["co_membership"].ease_l2 == 300.0  # now item-kNN: the EASE value does not apply
    assert (by_name["ials_ann"].factors, by_name["ials_ann"].iterations) == (8, 3)
    assert (pipeline.scorer.config.num_leaves, pipeline.scorer.config.min_data_in_leaf) == (9, 12)
