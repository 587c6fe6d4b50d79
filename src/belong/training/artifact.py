"""Versioned, self-describing model artifacts: ``<out>/<version>/manifest.json`` plus data files, never code.

Layout::

    models/20261126T021500Z-3f9a1c/
        manifest.json                      format, version, created_at, store, data window, counts, every
                                           file's sha256 and size; per surface: pipeline (components and
                                           parameters), each source's fitted values (file and kind) or
                                           ``refit_on_load``, ranker (features, params, metrics, importance)
        communities/ranker_order.txt       LightGBM text models
        communities/ranker_join.txt
        communities/calibrator_join.npz    calibrator arrays (isotonic thresholds or Platt coefficients)
        communities/<source>.<key>.npy     a source's fitted values: numpy arrays (``np.save``),
        communities/<source>.<key>.npz     sparse matrices (CSR data, indices, indptr, shape),
        communities/<source>.<key>.faiss   ANN indexes in their library's format (faiss, usearch, hnswlib),
        communities/<source>.<key>.json    JSON values

A source saves its :meth:`~belong.pipeline.components.Component.fitted` state; a source without one (its
``prepare`` only derives from the state), the hydrators, filters and selector are prepared again at load.

Loading runs no code from the artifact: nothing is unpickled (arrays are read with ``allow_pickle=False``),
and before anything is read every file is checked against the manifest (none missing, none extra, each size
and sha256 as written, no pickle by name or content). A refusal is a :class:`ValidationError` naming the file.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import orjson
import scipy.sparse as sp

from belong import surfaces
from belong.ann import AnnIndex
from belong.errors import ValidationError
from belong.pipeline.components import Component
from belong.pipeline.pipeline import Pipeline
from belong.ranking.ranker import Ranker
from belong.state import WorldState

FORMAT = 2  # 1: pickled sources and calibrators (refused)
MANIFEST = "manifest.json"
PICKLE_SUFFIXES = (".pkl", ".pickle")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # source and value names, used in file names


def _refuse(reason: str) -> NoReturn:
    raise ValidationError("artifact", reason)


def new_version(now: datetime, salt: str) -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex>``: sortable by time, unique per content salt."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha1(salt.encode()).hexdigest()[:6]


# ------------------------------------------------------------------------------------------------ writing
def _write_value(root: Path, stem: str, value: Any) -> dict[str, Any]:
    """Write one fitted value as ``root/<stem>.<ext>``; returns its manifest entry (kind, file, ...)."""
    if isinstance(value, AnnIndex):
        return {"kind": "ann", **value.save(root, stem)}
    if sp.issparse(value):
        m = sp.csr_matrix(value)
        np.savez(root / f"{stem}.npz", allow_pickle=False, data=m.data, indices=m.indices, indptr=m.indptr,
                 shape=np.asarray(m.shape, np.int64))
        return {"kind": "csr", "file": f"{stem}.npz"}
    if isinstance(value, np.ndarray):
        np.save(root / f"{stem}.npy", value, allow_pickle=False)  # object arrays fail here
        return {"kind": "array", "file": f"{stem}.npy"}
    (root / f"{stem}.json").write_bytes(orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY))
    return {"kind": "json", "file": f"{stem}.json"}


def _write_component(root: Path, folder: str, comp: Component) -> dict[str, Any]:
    fitted = comp.fitted()
    if fitted is None:
        return {"refit_on_load": "its prepare only derives from the state: prepared again at load"}
    out = {}
    for key, value in fitted.items():
        if not _NAME.fullmatch(comp.name) or not _NAME.fullmatch(key):
            raise ValidationError(comp.name, f"cannot save {key!r}: file names take letters, digits, _ and -")
        out[key] = _write_value(root, f"{folder}/{comp.name}.{key}", value)
    return {"fitted": out}


def write_surface(directory: Path, pipeline: Pipeline) -> dict[str, Any]:
    """Write one fitted surface's files under ``directory/<surface>``; returns its manifest entry."""
    folder = pipeline.surface.value
    (directory / folder).mkdir(parents=True, exist_ok=True)
    sources = {src.name: _write_component(directory, folder, src) for src in pipeline.sources}
    entry: dict[str, Any] = {"pipeline": pipeline.to_dict(), "sources": sources}
    ranker: Ranker | None = getattr(pipeline.scorer, "ranker", None)
    if ranker is not None:
        entry["ranker"] = ranker.save(directory, folder)
    return entry


def _files(directory: Path) -> dict[str, Path]:
    """Every file under ``directory`` but the manifest, by its path relative to it (``/``-separated)."""
    out = {}
    for p in sorted(directory.rglob("*")):
        rel = p.relative_to(directory).as_posix()
        if rel == MANIFEST or (p.is_dir() and not p.is_symlink()):
            continue
        if p.is_symlink() or not p.is_file():
            _refuse(f"{rel} in {directory} is not a regular file")
        out[rel] = p
    return out


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    """Write ``manifest.json`` with the format and every file's sha256 and size (write the files first)."""
    files = {rel: {"sha256": _sha256(p), "bytes": p.stat().st_size} for rel, p in _files(directory).items()}
    manifest = {"format": FORMAT, **manifest, "files": files}
    path = directory / MANIFEST
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


# ------------------------------------------------------------------------------------------------ reading
def _verify(directory: Path, listed: dict[str, Any]) -> None:
    """The directory holds exactly the listed files, each as written, none a pickle; else ValidationError."""
    present = _files(directory)
    for rel in sorted(set(present) | set(listed)):
        if rel.lower().endswith(PICKLE_SUFFIXES):
            _refuse(f"{rel} in {directory} is a pickle file: artifacts hold data only")
        if rel not in listed:
            _refuse(f"unexpected file {rel} in {directory} (not in its manifest)")
        if rel not in present:
            _refuse(f"missing file {rel} in {directory}")
        path, want = present[rel], listed[rel]
        with open(path, "rb") as fh:
            if fh.read(1) == b"\x80":
                _refuse(f"{rel} in {directory} is a pickle (its first byte is 0x80): artifacts are data only")
        if path.stat().st_size != want.get("bytes") or _sha256(path) != want.get("sha256"):
            _refuse(f"{rel} in {directory} was altered: its size or sha256 differs from the manifest")


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an artifact directory, once its format and every file are verified."""
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        _refuse(f"no {MANIFEST} in {directory} (write one with `belong train`)")
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        _refuse(f"{path} is not JSON: {exc}")
    fmt = data.get("format") if isinstance(data, dict) else None
    if fmt != FORMAT:
        _refuse(f"{directory} has artifact format {fmt!r}; this version reads format {FORMAT} (data files "
                "only, no pickle): retrain it with belong train")
    if not isinstance(data.get("files"), dict):
        _refuse(f"the manifest of {directory} lists no files")
    _verify(directory, data["files"])
    return data


def _path(directory: Path, manifest: dict[str, Any], rel: str) -> Path:
    """A file the manifest lists (so verified and inside the directory)."""
    if rel not in manifest["files"]:
        _refuse(f"{rel!r} is not a file of {directory}'s manifest")
    return directory / rel


def _read_value(directory: Path, manifest: dict[str, Any], entry: dict[str, Any]) -> Any:
    path, kind = _path(directory, manifest, entry["file"]), entry["kind"]
    try:
        if kind == "ann":
            return AnnIndex.load(directory, entry)
        if kind == "csr":
            with np.load(path, allow_pickle=False) as z:
                return sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"].tolist()))
        if kind == "array":
            return np.load(path, allow_pickle=False)
        if kind == "json":
            return orjson.loads(path.read_bytes())
    except Exception as exc:  # noqa: BLE001 - e.g. allow_pickle=False refusing an object array
        _refuse(f"{entry['file']} in {directory} cannot be read as {kind}: {type(exc).__name__}: {exc}")
    _refuse(f"{entry['file']} in {directory} has an unknown kind {kind!r}")


def _load_ranker(directory: Path, manifest: dict[str, Any], part: dict[str, Any]) -> Ranker:
    for rel in [*part["files"].values(), *(c["file"] for c in part["calibrators"].values())]:
        _path(directory, manifest, rel)
    try:
        return Ranker.load(directory, part)
    except ValidationError:
        raise
    except Exception as exc:  # noqa: BLE001 - a file that is not what the manifest says
        _refuse(f"the ranker in {directory} cannot be read: {type(exc).__name__}: {exc}")


def _surface_entry(manifest: dict[str, Any], surface: str) -> dict[str, Any]:
    entries = manifest.get("surfaces", {})
    if surface not in entries:
        try:
            surface = surfaces.load(surface).surface.value
        except ValidationError:
            pass
    if surface not in entries:
        raise ValidationError("surface", f"the artifact has no surface {surface!r}; it has: "
                              + ", ".join(entries))
    return entries[surface]


def load_ranker(directory: Path, surface: str) -> Ranker:
    """The trained ranker of ``surface`` (a surface name or a ranked TOML stem) from an artifact directory."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    entry = _surface_entry(manifest, surface)
    if "ranker" not in entry:
        _refuse(f"surface {surface!r} of {directory} has no ranker")
    return _load_ranker(directory, manifest, entry["ranker"])


def load_pipeline(directory: Path, surface: str, state: WorldState) -> Pipeline:
    """A fitted pipeline from an artifact: sources restored from their saved values (or prepared on
    ``state``), the ranker loaded, the other components prepared on ``state``."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    entry = _surface_entry(manifest, surface)
    pipeline = surfaces.from_dict(entry["pipeline"], entry.get("name", surface))
    if "ranker" in entry:  # first: an artifact of another feature set is refused before any fitting
        ranker = _load_ranker(directory, manifest, entry["ranker"])
        pipeline.scorer.ranker = ranker  # type: ignore[attr-defined]
    for src in pipeline.sources:
        saved = entry["sources"].get(src.name, {}).get("fitted")
        if saved is None:
            src.prepare(state)
        else:
            src.restore({key: _read_value(directory, manifest, e) for key, e in saved.items()}, state)
    for comp in (*pipeline.hydrators, *pipeline.filters, pipeline.selector):
        comp.prepare(state)
    if "ranker" not in entry:
        pipeline.scorer.prepare(state)
    pipeline.state = state
    return pipeline
