"""Atomic publish of a ``belong train`` artifact: nothing is ever half there.

``train`` writes the artifact into a staging directory beside its final place (``OUT/.staging-<version>-<pid>``),
fsyncs every file and directory in it, then renames it to ``OUT/<version>`` (one atomic ``rename`` on a POSIX file
system) and fsyncs ``OUT``. A ``belong train`` killed at any point leaves at most a staging directory, which every
loader ignores (:func:`belong.training.locate.artifact_versions` lists only names that do not start with ``.``),
so the previous artifact stays the newest; the next ``belong train`` removes staging directories whose process is
gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

STAGING = ".staging-"


def staging_dir(out: Path, version: str) -> Path:
    return Path(out) / f"{STAGING}{version}-{os.getpid()}"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(staging: Path, final: Path) -> Path:
    """Make the fully written ``staging`` directory the artifact ``final``, durably and atomically."""
    for path in sorted(staging.rglob("*"), key=lambda p: len(p.parts), reverse=True):  # files, then their dirs
        _fsync(path)
    _fsync(staging)
    os.rename(staging, final)  # fails if ``final`` exists: an artifact is never replaced in place
    _fsync(final.parent)
    return final


def sweep(out: Path) -> list[Path]:
    """Remove the staging directories under ``out`` left by ``belong train`` processes that are gone."""
    removed: list[Path] = []
    if not Path(out).is_dir():
        return removed
    for path in Path(out).iterdir():
        if not (path.is_dir() and path.name.startswith(STAGING)):
            continue
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 0)
        return True
    return False
