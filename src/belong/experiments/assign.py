"""Deterministic, language-neutral assignment (the spec, with test vectors: docs/EXPERIMENTS.md).

    bucket(salt, unit) = int.from_bytes(sha256(f"{salt}:{unit}".encode("utf-8")).digest()[:8], "big") % 10000

* **Layer**: a unit's layer bucket is ``bucket(layer, unit)`` (the layer's name is the salt). Each running experiment
  of the layer holds a contiguous range ``[lo, hi)`` of the layer's 10,000 buckets (``traffic`` x 10,000, given
  at creation as the first free range, then stored): a unit is in at most one experiment per layer.
* **Arm**: inside its experiment, ``bucket(salt, unit)`` (the experiment's salt) is split among the arms by their
  cumulative weights: arm i holds ``[round(10000 * w_0..i-1), round(10000 * w_0..i))``.
* **Unit**: the user id, or for ``unit = "cluster"`` the id of the user's friend-graph cluster (saved with the
  experiment); a user the saved clustering does not know (new since) is its own cluster ``"u:<user id>"``.
* **Forced arms** (QA) override all of this for one user and one experiment.

Nothing is stored per assignment: the same (salt, unit) gives the same arm in every process and after restarts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from belong.experiments.declaration import BUCKETS, Declaration


def bucket(salt: str, unit: str) -> int:
    """The unit's bucket in [0, 10000) under ``salt``."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{unit}".encode()).digest()[:8], "big") % BUCKETS


def arm_bounds(decl: Declaration) -> list[tuple[str, int, int]]:
    """(arm, lo, hi) bucket ranges of the arms, by cumulative weight."""
    out, acc = [], 0.0
    lo = 0
    for i, arm in enumerate(decl.arms):
        acc += arm.weight
        hi = BUCKETS if i == len(decl.arms) - 1 else round(acc * BUCKETS)
        out.append((arm.name, lo, hi))
        lo = hi
    return out


def arm_of(decl: Declaration, unit: str) -> str:
    """The arm of ``unit`` (ignoring layer and forced arms)."""
    b = bucket(decl.salt, unit)
    for name, lo, hi in arm_bounds(decl):
        if lo <= b < hi:
            return name
    return decl.arms[-1].name


def free_range(width: int, taken: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """The first free contiguous range of ``width`` buckets among ``taken`` ranges, or None."""
    lo = 0
    for a, b in sorted(taken):
        if a - lo >= width:
            return lo, lo + width
        lo = max(lo, b)
    return (lo, lo + width) if BUCKETS - lo >= width else None


class Assigner:
    """Assignment of users to the arms of running experiments (one object per set of running experiments).

    ``experiments``: (declaration, layer range) of each running experiment; ``forced``: experiment -> user -> arm;
    ``clusters``: experiment -> user -> cluster id (cluster-unit experiments)."""

    def __init__(self, experiments: Sequence[tuple[Declaration, tuple[int, int]]],
                 forced: Mapping[str, Mapping[str, str]] | None = None,
                 clusters: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.experiments = list(experiments)
        self.forced = {k: dict(v) for k, v in (forced or {}).items()}
        self.clusters = {k: dict(v) for k, v in (clusters or {}).items()}

    def unit(self, decl: Declaration, user_id: str) -> str:
        if decl.unit == "cluster":
            return self.clusters.get(decl.name, {}).get(user_id, f"u:{user_id}")
        return user_id

    def assign(self, user_id: str) -> list[tuple[Declaration, str]]:
        """(experiment, arm) of every running experiment ``user_id`` is in."""
        out = []
        for decl, (lo, hi) in self.experiments:
            forced = self.forced.get(decl.name, {}).get(user_id)
            if forced is not None:
                out.append((decl, forced))
                continue
            unit = self.unit(decl, user_id)
            if not lo <= bucket(decl.layer, unit) < hi:
                continue
            out.append((decl, arm_of(decl, unit)))
        return out
