"""Versioned, self-describing model artifacts: ``<out>/<version>/manifest.json`` plus model files.

Layout::

    models/20261126T021500Z-3f9a1c/
        manifest.json                      version, created_at, store, data window, counts, per surface:
                                           pipeline (components and parameters), sources' files, ranker
                                           (features, params, validation metrics, calibration error, importance)
        communities/ranker_order.txt       LightGBM text models
        communities/ranker_join.txt
        communities/calibrators.pkl
        communities/source_<name>.pkl      fitted source components (pickle; absent when one cannot be pickled)

:func:`load_pipeline` rebuilds a fitted :class:`~belong.pipeline.pipeline.Pipeline` from it (sources unpickled,
ranker loaded, anything missing prepared on the given state); :func:`load_ranker` is what the ``lgbm_ranker``
scorer's ``artifact`` setting uses.
"""

from __future__ import annotations

import hashlib
import pickle
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from belong import surfaces
from belong.errors import ValidationError
from belong.pipeline.pipeline import Pipeline
from belong.ranking.ranker import Ranker
from belong.state import WorldState

FORMAT = 1
MANIFEST = "manifest.json"


def new_version(now: datetime, salt: str) -> str:
    """``YYYYMMDDTHHMMSSZ-<6 hex>``: sortable by time, unique per content salt."""
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + hashlib.sha1(salt.encode()).hexdigest()[:6]


def read_manifest(directory: Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ValidationError("artifact", f"no {MANIFEST} in {directory} (write one with `belong train`)")
    data = orjson.loads(path.read_bytes())
    if data.get("format") != FORMAT:
        raise ValidationError("artifact", f"unsupported artifact format {data.get('format')!r} in {directory}")
    return data


def write_surface(directory: Path, pipeline: Pipeline) -> dict[str, Any]:
    """Write one fitted surface's files under ``directory/<surface>``; returns its manifest entry."""
    sub = directory / pipeline.surface.value
    sub.mkdir(parents=True, exist_ok=True)
    sources: dict[str, Any] = {}
    for src in pipeline.sources:
        fname = f"source_{src.name}.pkl"
        try:
            blob = pickle.dumps(src, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - e.g. a native ANN index: it is rebuilt at load time
            sources[src.name] = {"file": None, "refit_on_load": f"{type(exc).__name__}: {exc}"[:200]}
            continue
        (sub / fname).write_bytes(blob)
        sources[src.name] = {"file": f"{pipeline.surface.value}/{fname}", "bytes": len(blob)}
    entry: dict[str, Any] = {"pipeline": pipeline.to_dict(), "sources": sources}
    ranker: Ranker | None = getattr(pipeline.scorer, "ranker", None)
    if ranker is not None:
        part = ranker.save(sub)
        part["files"] = {k: f"{pipeline.surface.value}/{v}" for k, v in part["files"].items()}
        entry["ranker"] = part
    return entry


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    manifest = {"format": FORMAT, **manifest}
    path = directory / MANIFEST
    path.write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


def _surface_entry(manifest: dict[str, Any], surface: str) -> dict[str, Any]:
    surfaces = manifest.get("surfaces", {})
    if surface not in surfaces:
        try:
            surface = surfaces.load(surface).surface.value
        except ValidationError:
            pass
    if surface not in surfaces:
        raise ValidationError("surface", f"the artifact has no surface {surface!r}; it has: {', '.join(surfaces)}")
    return surfaces[surface]


def load_ranker(directory: Path, surface: str) -> Ranker:
    """The trained ranker of ``surface`` (a surface name or a ranked TOML stem) from an artifact directory."""
    manifest = read_manifest(directory)
    entry = _surface_entry(manifest, surface)
    if "ranker" not in entry:
        raise ValidationError("artifact", f"surface {surface!r} of {directory} has no ranker")
    return Ranker.load(Path(directory), entry["ranker"])


def load_pipeline(directory: Path, surface: str, state: WorldState) -> Pipeline:
    """A fitted pipeline from an artifact: pickled sources and the ranker loaded, the rest prepared on ``state``."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    entry = _surface_entry(manifest, surface)
    pipeline = surfaces.from_dict(entry["pipeline"], entry.get("surface_toml", surface))
    for i, src in enumerate(pipeline.sources):
        fname = entry["sources"].get(src.name, {}).get("file")
        if fname:
            with open(directory / fname, "rb") as fh:
                pipeline.sources[i] = pickle.load(fh)  # noqa: S301 - our own artifact
        else:
            src.prepare(state)
    for comp in (*pipeline.hydrators, *pipeline.filters, pipeline.selector):
        comp.prepare(state)
    if "ranker" in entry:
        pipeline.scorer.ranker = Ranker.load(directory, entry["ranker"])  # type: ignore[attr-defined]
    else:
        pipeline.scorer.prepare(state)
    pipeline.state = state
    return pipeline
