"""``belong forget`` without a server: forget a user in the store and the feature store, and name the trained
artifacts that still hold them (see :mod:`belong.eventlog.forget` for what the store does; a running server does
the same through ``DELETE /v1/users/{id}`` and also masks the user in its live state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from belong.eventlog import EventStore
from belong.features.online import MATERIALIZED_AT, OnlineFeatureStore
from belong.training.locate import artifact_versions


def artifacts_before(models_dir: str | Path | None) -> list[str]:
    """The ``belong train`` artifact versions under ``models_dir`` now: each was trained on a log that may have held
    the user (their factor rows and neighbour lists are kept by index, not by id), so each is to be replaced by a
    new training (it reads the log, which no longer has them) and deleted."""
    return artifact_versions(models_dir) if models_dir else []


#: user features whose values name other users: list items or map keys
USER_ID_FEATURES = ("user_friend_degrees", "user_interactions", "user_blocked_users")


def scrub_rows(features: OnlineFeatureStore, user_id: str, related: Sequence[str]) -> int:
    """Take ``user_id`` out of the feature rows of ``related`` users (their friend, interaction and block lists
    name them); the rows keep their materialisation time. Counts (friend count, community size) are corrected by
    the next materialisation. Returns how many rows changed."""
    changed = 0
    for other in related:
        row = features.read("user", other)
        ts = row.get(MATERIALIZED_AT)
        if ts is None:
            continue
        new = {k: v for k, v in row.items() if k != MATERIALIZED_AT}
        for name in USER_ID_FEATURES:
            value = new.get(name)
            if isinstance(value, dict):
                new[name] = {k: v for k, v in value.items() if k != user_id}
            elif isinstance(value, list | tuple):
                new[name] = [v for v in value if v != user_id]
        if new != {k: v for k, v in row.items() if k != MATERIALIZED_AT}:
            features.write("user", {other: new}, int(ts))
            changed += 1
    return changed


def forget_user_data(store: EventStore, features: OnlineFeatureStore | None, user_id: str,
                     models_dir: str | Path | None) -> dict[str, Any]:
    """Forget ``user_id`` in the store (tombstone, events, row) and the feature store (their row); the answer
    counts what went and lists the artifact versions to retrain and delete (:func:`artifacts_before`)."""
    result = store.forget(user_id)
    rows = scrubbed = 0
    if features is not None:
        rows = features.delete("user", [user_id])
        scrubbed = scrub_rows(features, user_id, result.related)
    return {"events_deleted": result.events, "user_rows_deleted": result.users, "feature_rows_deleted": rows,
            "feature_rows_scrubbed": scrubbed,
            "already_forgotten": result.already, "artifacts_to_retrain": artifacts_before(models_dir)}
