"""Where trained artifacts live: a store's own models directory (``STORE/models`` for an embedded store, ``./models``
beside a PostgreSQL store), the versions in a directory, the newest one."""

from __future__ import annotations

from pathlib import Path

MANIFEST = "manifest.json"
SNAPSHOT = "snapshot"  # MODELS_DIR/snapshot/: the state snapshot beside the artifacts (belong.state.snapshot)


def is_url(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def default_models_dir(store: str | Path) -> Path:
    """Where ``belong train`` writes and ``belong recommend`` looks when no directory is named."""
    return Path("models") if is_url(str(store)) else Path(store) / "models"


def snapshot_dir(models_dir: str | Path | None) -> Path | None:
    """The state snapshot kept beside the artifacts of ``models_dir`` (``belong train`` and ``belong snapshot``
    write it; ``belong serve --models`` starts from it), or None when there is none."""
    if not models_dir:
        return None
    path = Path(models_dir) / SNAPSHOT
    return path if (path / "snapshot.json").is_file() else None


def artifact_versions(models_dir: str | Path | None) -> list[str]:
    """Versions written by ``belong train`` under ``models_dir`` (directories holding a manifest), oldest first
    (version names sort by time). Staging directories of a training still writing, or killed while writing, are
    not versions (their names start with ``.``; :mod:`belong.training.publish`)."""
    if not models_dir or not Path(models_dir).is_dir():
        return []
    found = [p for p in Path(models_dir).iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()]
    # names sort by time to the second; two trainings in one second are ordered by when their manifest was written
    found.sort(key=lambda p: (p.name.split("-", 1)[0], (p / MANIFEST).stat().st_mtime_ns, p.name))
    return [p.name for p in found]


def newest_artifact(models_dir: str | Path | None) -> Path | None:
    """The newest artifact directory under ``models_dir`` (None when there is none)."""
    versions = artifact_versions(models_dir)
    return Path(models_dir) / versions[-1] if versions and models_dir else None


def resolve_artifact(models: str | Path | None, store: str | Path) -> Path | None:
    """The artifact to answer from: ``models`` (an artifact directory, or a models directory: its newest), else the
    newest one in the store's own models directory; None when there is none."""
    if models is not None:
        path = Path(models)
        return path if (path / MANIFEST).is_file() else newest_artifact(path)
    return newest_artifact(default_models_dir(store))


def artifact_surface(directory: Path, name: str, kind: str) -> str | None:
    """The surface of artifact ``directory`` that answers for surface ``name`` (of kind ``kind``): the one trained
    from that declaration, else — when ``name`` is a kind (``communities``) — the one of that kind; None."""
    import orjson

    entries = orjson.loads((directory / MANIFEST).read_bytes()).get("surfaces", {})
    for key, entry in entries.items():
        if entry.get("name") == name:
            return str(key)
    return kind if name == kind and kind in entries else None
