"""SIGKILL ``belong train`` mid-write (issue 13, finding 9b): the previous artifact stays the newest one, and no half
artifact is ever listed or loaded (atomic publish: staging directory, fsync, rename)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from belong.datasets import write_world
from belong.eventlog import open_store
from belong.simulate import simulate
from belong.training.artifact import read_manifest
from belong.training.locate import artifact_versions, newest_artifact
from belong.training.publish import STAGING
from belong.training.train import train

ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


@pytest.fixture()
def trained(tmp_path: Path) -> tuple[str, Path, str]:
    """A small store and its models directory holding one complete artifact: (store, models dir, version)."""
    store = tmp_path / "store"
    with open_store(store) as st:
        for part in simulate(200, 20, seed=4):
            write_world(st, part, progress=False)
    models = tmp_path / "models"
    first = train(str(store), models, ["communities", "people"])
    return str(store), models, Path(first["path"]).name


def _check_only_complete(models: Path, first: str) -> list[str]:
    versions = artifact_versions(models)
    assert first in versions
    for v in versions:
        read_manifest(models / v)  # every listed version is whole: each file there, as its manifest says
    newest = newest_artifact(models)
    assert newest is not None
    read_manifest(newest)
    return versions


def test_killed_while_writing_its_manifest_leaves_no_artifact(trained: tuple[str, Path, str]) -> None:
    """The worst moment: the manifest half written when the process dies (it kills itself right there)."""
    store, models, first = trained
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from belong.training import artifact
        from belong.training.train import train

        real = Path.write_bytes
        def half(self, data):
            if self.name == artifact.MANIFEST:
                real(self, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, data)
        Path.write_bytes = half
        train({store!r}, Path({str(models)!r}), ["communities", "people"])
    """)
    proc = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert _check_only_complete(models, first) == [first]
    assert [p for p in models.iterdir() if p.name.startswith(STAGING)], "the half artifact stayed in staging"


@pytest.mark.slow
def test_sigkill_belong_train_at_many_points(trained: tuple[str, Path, str]) -> None:
    """``belong train`` killed at several moments after it starts writing: only whole artifacts are ever listed;
    the next training sweeps the leftovers and publishes."""
    store, models, first = trained
    belong = str(Path(sys.executable).with_name("belong"))
    mid_write = 0
    for delay in (0.0, 0.01, 0.05, 0.2):
        proc = subprocess.Popen([belong, "train", "--store", store, "--out", str(models), "-s", "communities",
                                 "-s", "people"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            staged = [p for p in models.iterdir() if p.name.startswith(STAGING)
                      and p.name.endswith(f"-{proc.pid}")]
            if staged and any(f.is_file() for f in staged[0].rglob("*")):
                break
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if any(p.name.endswith(f"-{proc.pid}") for p in models.iterdir()):
            mid_write += 1
        _check_only_complete(models, first)
    assert mid_write >= 2, "most kills landed while the artifact was being written"
    again = train(store, models, ["communities", "people"])
    assert [p for p in models.iterdir() if p.name.startswith(STAGING)] == []
    assert newest_artifact(models) == Path(again["path"])
    read_manifest(Path(again["path"]))
