"""``belong serve --models DIR`` loads the newest ``belong train`` artifact (fitted sources and the learned
ranker), lists the artifacts, and loads another one on ``POST /v1/models?artifact=…`` — over a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from belong import surfaces
from serve_helpers import ADMIN_KEY, auth, run_server


def _ranked_toml(tmp: Path) -> Path:
    """The shipped ranked communities surface, with a ranker small enough for an 800-user world."""
    shipped = surfaces.load("communities_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 60, "min_data_in_leaf": 20})
    from belong.toml_writer import dumps

    path = tmp / "ranked_small.toml"
    path.write_text(dumps(shipped), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def models_dir(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("serve-models")
    out = tmp / "models"
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run([belong, "train", "--store", str(small_store), "--out", str(out), "--surface",
                           str(_ranked_toml(tmp)), "--json"], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return out, json.loads(done.stdout)["version"]


def test_server_loads_the_newest_artifact_with_its_ranker(small_store: Path, models_dir: tuple[Path, str]) -> None:
    out, version = models_dir
    with run_server(small_store, {"BELONG_BUDGET_SOURCES_MS": "30000"}, "--models", str(out)) as (base, _):
        with httpx.Client(base_url=base, timeout=60) as c:
            models = c.get("/v1/models").json()
            assert models["active"] == version and models["artifacts"] == [version]
            meta = models["versions"][0]
            assert meta["source"] == "artifact" and meta["loaded_surfaces"] == ["communities"]
            assert "communities" in meta["rankers"]
            shown = 0
            for i in range(40):
                r = c.get("/v1/recommendations/communities", params={"user_id": f"u{i}", "k": 10})
                body = r.json()
                assert r.status_code == 200 and body["model_version"] == version and not body["degraded"]
                for item in body["items"]:  # the learned ranker scored the cached list: p(join) per item
                    assert 0.0 <= item["features"]["p_join"] <= 1.0
                    shown += 1
            assert shown > 0
            # another artifact by name: unknown -> 404; the loaded one again -> no rebuild, same version
            bad = c.post("/v1/models", params={"artifact": "20990101T000000Z-ffffff"}, headers=auth(ADMIN_KEY))
            assert bad.status_code == 404 and bad.json()["field"] == "artifact"
            again = c.post("/v1/models", params={"artifact": version, "activate": "true"}, headers=auth(ADMIN_KEY))
            assert again.status_code == 201 and again.json()["active"] == version
            assert len(again.json()["versions"]) == 1


def test_serve_with_a_missing_models_directory_is_exit_2(small_store: Path, tmp_path: Path) -> None:
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run([belong, "serve", "--store", str(small_store), "--models", str(tmp_path / "nope")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "models" in done.stderr


def test_a_malformed_newest_artifact_falls_back_to_the_previous_one_and_no_path_is_shown(
        small_store: Path, models_dir: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 13, finding 6: a malformed manifest in the newest artifact (a restart after a bad deploy) must not
    make every request 503: the previous valid artifact is loaded (and the refusal logged); ``/v1/models`` names
    artifacts by version, never by filesystem path."""
    import logging
    import shutil
    import time

    from fastapi.testclient import TestClient

    from belong.serve.app import create_app
    from belong.serve.settings import ServeSettings

    out, version = models_dir
    models = tmp_path / "models"
    shutil.copytree(out / version, models / version)
    broken = models / f"{version}z"  # sorts after: the newest
    broken.mkdir()
    (broken / "manifest.json").write_text('{"format": 2, "files": {', encoding="utf-8")
    settings = ServeSettings(admin_keys=frozenset({ADMIN_KEY}), models_dir=str(models), budget_sources_ms=30000.0,
                             read_auth=False)
    with caplog.at_level(logging.WARNING, logger="belong.serve"), \
            TestClient(create_app(small_store, settings=settings)) as c:
        deadline = time.monotonic() + 300
        while (ready := c.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline and "Error" not in ready.json()["message"], ready.text
            time.sleep(0.2)
        listed = c.get("/v1/models")
        assert listed.json()["active"] == version
        assert str(tmp_path) not in listed.text and str(models) not in listed.text
        assert listed.json()["versions"][0]["artifact"] == version
        assert c.get("/v1/recommendations/communities", params={"user_id": "u1", "k": 3}).status_code == 200
    assert any(broken.name in r.getMessage() and "previous" in r.getMessage() for r in caplog.records)
