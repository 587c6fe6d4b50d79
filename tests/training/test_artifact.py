"""``belong train`` on a tiny store: the artifact describes itself, loads back to the same scores, and the
pipeline's trace names the rule and reason of every removed candidate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from belong import surfaces
from belong.cli import main
from belong.datasets import write_world
from belong.domain import Surface
from belong.eventlog import open_store
from belong.pipeline.types import Request
from belong.training.artifact import load_pipeline, read_manifest, write_manifest, write_surface
from belong.training.train import load_state


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
def store(tmp_path_factory, sim_world) -> str:
    path = tmp_path_factory.mktemp("store") / "sim"
    with open_store(path) as st:
        write_world(st, sim_world, progress=False)
    return str(path)


def test_belong_train_writes_a_versioned_self_describing_artifact(
        store, surface_toml, tmp_path, capsys):
    code, stdout, _ = _cli(["train", "--store", store, "--out", str(tmp_path), "--surface", str(surface_toml),
                            "--surface", "people", "--json"], capsys)
    assert code == 0
    result = json.loads(stdout)
    directory = Path(result["path"])
    manifest = read_manifest(directory)
    assert manifest["version"] == directory.name and directory.parent == tmp_path
    assert manifest["data_window"]["first_ts_us"] <= manifest["data_window"]["last_ts_us"]
    entry = manifest["surfaces"]["communities"]
    ranker = entry["ranker"]
    assert ranker["features"] and ranker["params"]["seed"] == 0
    m = ranker["metrics"]
    assert {"ranker", "sources", "calibration", "feature_importance"} <= set(m)
    assert m["calibration"]["ece_after"] >= 0 and m["calibration"]["ece_before"] >= 0
    assert entry["pipeline"]["scorer"]["type"] == "lgbm_ranker"
    assert "people" in manifest["surfaces"]
    assert "people" in manifest["surfaces"]


def test_artifact_round_trip_gives_the_same_scores(store, surface_toml, tmp_path):
    """Fit in memory, write, load back: every request ranks the same items with the same scores."""
    state, window = load_state(store)
    fitted = surfaces.load(str(surface_toml)).fit(state)
    entry = write_surface(tmp_path, fitted)
    write_manifest(tmp_path, {"version": "test", "data_window": window, "surfaces": {"communities": entry}})
    loaded = load_pipeline(tmp_path, "communities", state)
    assert loaded.scorer.ranker.feature_names == fitted.scorer.ranker.feature_names  # type: ignore[attr-defined]
    shown = 0
    for u in state.users.ids[:80]:
        a = fitted.run(Request(u, Surface.COMMUNITIES, k=10, explain=False)).items
        b = loaded.run(Request(u, Surface.COMMUNITIES, k=10, explain=False)).items
        assert [it.id for it in a] == [it.id for it in b]
        assert [it.score for it in a] == pytest.approx([it.score for it in b], rel=1e-9, abs=1e-12)
        shown += len(a)
    assert shown > 0


def test_trace_shows_rule_and_reason_for_every_removed_candidate(store, surface_toml, tmp_path, capsys):
    state, _ = load_state(store)
    p = surfaces.load(str(surface_toml)).fit(state)
    removed = 0
    for u in state.users.ids[:60]:
        r = p.run(Request(u, Surface.COMMUNITIES, k=10))
        for rem in r.trace.removed:
            rule, _, reason = rem.reason.partition(": ")
            assert rem.filter == "safety_rules" and rule and reason
            removed += 1
        assert all(0 < it.features["propensity"] <= 1 for it in r.items)
    assert removed > 0


def test_train_errors_are_exit_code_2(tmp_path, capsys):
    code, _, err = _cli(["train", "--store", str(tmp_path / "none"), "--out", str(tmp_path)], capsys)
    assert code == 2 and "error" in err
    code, _, err = _cli(["train", "--store", str(tmp_path / "none"), "--surface", "no_such_surface"], capsys)
    assert code == 2 and "surface" in err


def test_an_artifact_of_another_feature_set_is_refused_with_the_reason(store, surface_toml, tmp_path):
    from belong.errors import ValidationError

    state, window = load_state(store)
    fitted = surfaces.load(str(surface_toml)).fit(state)
    entry = write_surface(tmp_path, fitted)
    entry["ranker"]["features"] = entry["ranker"]["features"][:-3]  # as an older version wrote it
    write_manifest(tmp_path, {"version": "old", "data_window": window, "surfaces": {"communities": entry}})
    with pytest.raises(ValidationError, match="another feature set.*retrain"):
        load_pipeline(tmp_path, "communities", state)
