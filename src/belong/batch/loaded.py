"""What a batch worker holds: the fitted pipelines of a ``belong train`` artifact, loaded once per process by path
(artifacts are data files; the state from the snapshot beside them when there is one, else from the store's log)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from belong.errors import ValidationError


def artifact_of(store: str, models_dir: str | Path | None) -> tuple[Path, Path | None]:
    """``(newest artifact, snapshot or None)`` under ``models_dir`` (default: the store's models directory)."""
    from belong.training.locate import artifact_versions, default_models_dir, snapshot_dir

    models = Path(models_dir) if models_dir else default_models_dir(store)
    known = artifact_versions(models) if models.is_dir() else []
    if not known:
        raise ValidationError("models", f"no belong train artifact under {models} (run belong train first)")
    return models / known[-1], snapshot_dir(models)


def load(store: str, artifact: str, snapshot: str | None) -> Any:
    """The :class:`~belong.serve.versions.ModelVersion` of ``artifact`` over ``store``."""
    from belong.serve.versions import load_version

    return load_version(store, artifact, None, snapshot=snapshot)
