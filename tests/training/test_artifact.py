"""``belong train`` on a tiny store: the artifact describes itself, holds data only (no pickle), loads back to
the same candidates and scores even with pickle unusable, refuses any altered, missing, extra or pickled file
and an old format, and the pipeline's trace names the rule and reason of every removed candidate."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest

from belong import surfaces
from belong.cli import main
from belong.datasets import write_world
from belong.domain import Surface
from belong.errors import ValidationError
from belong.eventlog import open_store
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Request
from belong.training.artifact import MANIFEST, load_pipeline, read_manifest, write_manifest, write_surface
from belong.training.train import load_state

#: every source that saves a fitted state (two ANN backends, sparse and dense item x item matrices, TF-IDF),
#: two prepared again at load, and the learned ranker with its calibrator
ALL_SOURCES = """
surface = "communities"
[[sources]]
type = "ials_ann"
factors = 8
iterations = 3
ann = "usearch"
k = 50
[[sources]]
type = "ials_ann"
name = "ials_hnsw"
factors = 8
iterations = 3
ann = "faiss_hnsw"
k = 50
[[sources]]
type = "co_membership"
model = "itemknn"
k = 50
[[sources]]
type = "co_membership"
name = "co_ease"
model = "ease"
k = 50
[[sources]]
type = "text_match"
encoder = "tfidf"
k = 50
[[sources]]
type = "pixie"
walkers = 200
k = 50
[[sources]]
type = "trending"
k = 30
[[hydrators]]
type = "social"
[[filters]]
type = "safety_rules"
[scorer]
type = "lgbm_ranker"
users = 300
rounds = 30
min_data_in_leaf = 20
[selector]
type = "top_k"
"""


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


@pytest.fixture(scope="module")
def written(store, tmp_path_factory):
    """(artifact directory, state, fitted pipeline): every costly source fitted in memory, then written."""
    state, window = load_state(store)
    fitted = Pipeline.from_toml(ALL_SOURCES, "all_sources").fit(state)
    directory = tmp_path_factory.mktemp("artifact")
    entry = write_surface(directory, fitted)
    write_manifest(directory, {"version": "test", "data_window": window, "surfaces": {"communities": entry}})
    return directory, state, fitted


def _copy(written, tmp_path: Path) -> Path:
    return Path(shutil.copytree(written[0], tmp_path / "copy"))


def _rehash(directory: Path, rel: str) -> None:
    """Make the manifest agree with a file changed on purpose (its size and sha256)."""
    manifest = orjson.loads((directory / MANIFEST).read_bytes())
    data = (directory / rel).read_bytes()
    manifest["files"][rel] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (directory / MANIFEST).write_bytes(orjson.dumps(manifest))


def _lists(pipeline, users: list[str]) -> dict[str, list[list]]:
    run = pipeline.run
    return {u: [[it.id, it.score] for it in run(Request(u, Surface.COMMUNITIES, k=10, explain=False)).items]
            for u in users}


def test_artifact_round_trip_gives_the_same_candidates_and_scores(written):
    """Written and loaded back: every source proposes the same candidates with the same scores, and every
    request ranks the same items with the same scores (exactly)."""
    directory, state, fitted = written
    loaded = load_pipeline(directory, "communities", state)
    sources = read_manifest(directory)["surfaces"]["communities"]["sources"]
    saved = {"ials_ann", "ials_hnsw", "co_membership", "co_ease", "text_match"}
    assert {n for n, e in sources.items() if "fitted" in e} == saved
    assert {n for n, e in sources.items() if "refit_on_load" in e} == {"pixie", "trending"}
    kinds = {n: {k: v["kind"] for k, v in e["fitted"].items()} for n, e in sources.items() if "fitted" in e}
    assert kinds["ials_ann"]["index"] == "ann" and kinds["ials_ann"]["trained_rows"] == "csr"
    assert kinds["co_membership"]["M"] == "csr" and kinds["co_ease"]["M"] == "array"
    assert sources["ials_ann"]["fitted"]["index"]["backend"] == "usearch"
    assert sources["ials_hnsw"]["fitted"]["index"]["backend"] == "faiss_hnsw"
    assert loaded.scorer.ranker.feature_names == fitted.scorer.ranker.feature_names  # type: ignore[attr-defined]
    users = state.users.ids[:80]
    found = 0
    for u in users:
        request = Request(u, Surface.COMMUNITIES, k=10)
        for a, b in zip(fitted.sources, loaded.sources, strict=True):
            got = [(c.item, c.score, c.reason.text) for c in a.generate(request, state)]
            assert got == [(c.item, c.score, c.reason.text) for c in b.generate(request, state)], a.name
            found += len(got)
    assert found > 0
    assert _lists(loaded, users) == _lists(fitted, users)


def test_the_artifact_holds_no_pickle_and_lists_every_file(written):
    directory = written[0]
    files = read_manifest(directory)["files"]
    on_disk = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                     if p.is_file() and p.name != MANIFEST)
    assert sorted(files) == on_disk
    for rel in on_disk:
        data = (directory / rel).read_bytes()
        assert not rel.endswith((".pkl", ".pickle")) and data[:1] != b"\x80", rel
        assert files[rel] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    suffixes = {Path(rel).suffix for rel in on_disk}
    assert suffixes == {".npy", ".npz", ".json", ".txt", ".faiss"}


LOAD_WITHOUT_PICKLE = """
import _pickle, json, pickle, sys
from belong.training.artifact import load_pipeline
from belong.training.train import load_state
from belong.domain import Surface
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Request

state, _ = load_state(sys.argv[1])

def refuse(*args, **kwargs):
    raise RuntimeError("pickle used while loading an artifact")

for module in (pickle, _pickle):
    module.load = module.loads = module.Unpickler = refuse
p = load_pipeline(sys.argv[2], "communities", state)
users = json.loads(sys.argv[3])
lists = {u: [[it.id, it.score] for it in p.run(Request(u, Surface.COMMUNITIES, k=10, explain=False)).items]
         for u in users}
print(json.dumps(lists))
"""


def test_loading_works_with_pickle_unusable(written, store):
    """A fresh process whose pickle cannot load anything loads the artifact and serves the same lists."""
    directory, state, fitted = written
    users = state.users.ids[:30]
    args = [sys.executable, "-c", LOAD_WITHOUT_PICKLE, store, str(directory), json.dumps(users)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == _lists(fitted, users)


def _a_npy(directory: Path) -> str:
    return next(p.relative_to(directory).as_posix() for p in sorted(directory.rglob("*.npy")))


def test_an_altered_file_is_refused_naming_it(written, tmp_path):
    directory = _copy(written, tmp_path)
    rel = _a_npy(directory)
    data = bytearray((directory / rel).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (directory / rel).write_bytes(bytes(data))
    with pytest.raises(ValidationError, match=f"{rel}.*altered"):
        load_pipeline(directory, "communities", written[1])


def test_a_missing_file_is_refused(written, tmp_path):
    directory = _copy(written, tmp_path)
    rel = "communities/ranker_order.txt"
    (directory / rel).unlink()
    with pytest.raises(ValidationError, match=f"missing file {rel}"):
        load_pipeline(directory, "communities", written[1])


@pytest.mark.parametrize("name", ["evil.pkl", "communities/notes.txt"])
def test_an_extra_file_is_refused(written, tmp_path, name):
    directory = _copy(written, tmp_path)
    (directory / name).write_bytes(pickle.dumps({"x": 1}) if name.endswith(".pkl") else b"hello")
    with pytest.raises(ValidationError, match=name.replace(".", r"\.")):
        read_manifest(directory)


def test_a_pickle_in_place_of_an_array_is_refused_even_with_its_checksum(written, tmp_path):
    directory = _copy(written, tmp_path)
    rel = _a_npy(directory)
    (directory / rel).write_bytes(pickle.dumps(np.arange(3)))
    _rehash(directory, rel)
    with pytest.raises(ValidationError, match=f"{rel}.*is a pickle"):
        load_pipeline(directory, "communities", written[1])


def test_an_object_array_is_refused_without_unpickling_it(written, tmp_path):
    """A ``.npy`` that holds a pickled object array (valid header, checksum fixed): ``allow_pickle=False``
    refuses it, and the refusal is a ValidationError naming the file."""
    directory = _copy(written, tmp_path)
    rel = "communities/ials_ann.item_factors.npy"
    np.save(directory / rel, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    _rehash(directory, rel)
    with pytest.raises(ValidationError, match=f"{rel} .*cannot be read.*allow_pickle"):
        load_pipeline(directory, "communities", written[1])


def test_an_artifact_of_the_old_format_is_refused_with_the_retrain_message(written, tmp_path):
    directory = _copy(written, tmp_path)
    manifest = orjson.loads((directory / MANIFEST).read_bytes())
    (directory / MANIFEST).write_bytes(orjson.dumps({**manifest, "format": 1}))
    with pytest.raises(ValidationError, match="format 1.*retrain it with belong train"):
        load_pipeline(directory, "communities", written[1])


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


def test_an_artifact_of_another_feature_set_is_refused_with_the_reason(written, tmp_path):
    directory = _copy(written, tmp_path)
    manifest = orjson.loads((directory / MANIFEST).read_bytes())
    entry = manifest["surfaces"]["communities"]
    entry["ranker"]["features"] = entry["ranker"]["features"][:-3]  # as an older version wrote it
    write_manifest(directory, {k: v for k, v in manifest.items() if k not in ("format", "files")})
    with pytest.raises(ValidationError, match="another feature set.*retrain"):
        load_pipeline(directory, "communities", written[1])
