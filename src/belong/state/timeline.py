"""Time-stamped facts a state keeps besides its current relations: what point-in-time cuts and outcome labels
read (join, leave and report events of communities; the raw community activity behind the heat)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class PairEvents:
    """(user index, community index, time) of one kind of event, in time order (e.g. leaves, reports)."""

    user: np.ndarray  # int64
    community: np.ndarray  # int64
    ts: np.ndarray  # int64 microseconds

    def __len__(self) -> int:
        return int(self.ts.size)


@dataclass(frozen=True, slots=True)
class ActivityLog:
    """The community activity behind ``community_heat``: community, user, weight before decay, time."""

    community: np.ndarray  # int64
    user: np.ndarray  # int64
    weight: np.ndarray  # float64
    ts: np.ndarray  # int64 microseconds
