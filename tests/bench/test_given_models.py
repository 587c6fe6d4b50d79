"""``--models`` of ``belong bench serve`` / ``replicas``: a ``belong train --out`` directory or its newest artifact,
checked before any work (a wrong path used to fail after the 1M world's features had been written)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from belong.bench.serve import given_models
from belong.errors import ValidationError
from belong.training.locate import MANIFEST


def _artifact(root: Path, name: str) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / MANIFEST).write_text("{}")
    return d


def test_a_train_output_directory_gives_its_newest(tmp_path: Path) -> None:
    old = _artifact(tmp_path, "20261201T000000Z-aaaaaa")
    new = _artifact(tmp_path, "20261202T000000Z-bbbbbb")
    os.utime(old / MANIFEST, (time.time() - 60, time.time() - 60))
    assert given_models(tmp_path) == (tmp_path, new.name)


def test_the_newest_artifact_directory_itself_is_accepted(tmp_path: Path) -> None:
    _artifact(tmp_path, "20261201T000000Z-aaaaaa")
    new = _artifact(tmp_path, "20261202T000000Z-bbbbbb")
    assert given_models(new) == (tmp_path, new.name)


def test_an_older_artifact_is_refused_naming_models(tmp_path: Path) -> None:
    old = _artifact(tmp_path, "20261201T000000Z-aaaaaa")
    _artifact(tmp_path, "20261202T000000Z-bbbbbb")
    with pytest.raises(ValidationError, match="not the newest") as exc:
        given_models(old)
    assert exc.value.field == "models"


def test_a_directory_without_artifacts_is_refused_naming_models(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no belong train artifact") as exc:
        given_models(tmp_path / "nothing")
    assert exc.value.field == "models"
