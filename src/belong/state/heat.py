"""Heat: time-decayed activity per item, overall and per user segment (locale, age group), for trending.

An event's weight ``log1p(value)`` halves every ``half_life`` before ``now``; the heat of an item is the sum over
its events, kept under the key ``"all"`` and under ``"locale:<xx>"`` / ``"age:<group>"`` for the actors'
segments (undetermined segments are not kept).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DAY_US = 86_400_000_000
HEAT_HALF_LIFE_DAYS = 7.0
UNDETERMINED = ("und", "unknown")


def decay(ts: np.ndarray, now_us: int, half_life_us: float) -> np.ndarray:
    """The factor of events at ``ts`` seen at ``now_us``: 1 at now, 1/2 one half-life earlier."""
    return np.exp2(np.clip((ts - now_us) / half_life_us, -60, 30))


def heat(target: np.ndarray, actor: np.ndarray, weight: np.ndarray, n: int, locale: Sequence[str],
         age_group: Sequence[str]) -> dict[str, np.ndarray]:
    """Per key, the summed ``weight`` of each of ``n`` targets; ``locale`` / ``age_group`` are the actors'."""
    out = {"all": np.bincount(target, weights=weight, minlength=n)}
    for attr, key in ((locale, "locale"), (age_group, "age")):
        values, per_user = np.unique(np.asarray(attr, dtype=object).astype(str), return_inverse=True)
        codes = per_user[actor]
        for code, value in enumerate(values.tolist()):
            if value in UNDETERMINED:
                continue
            m = codes == code
            if m.any():
                out[f"{key}:{value}"] = np.bincount(target[m], weights=weight[m], minlength=n)
    return out


def segment_keys(locale: str, age_group: str) -> list[str]:
    """The heat keys of one user, most specific first (undetermined segments left out)."""
    out = []
    if locale and locale != "und":
        out.append(f"locale:{locale}")
    if age_group != "unknown":
        out.append(f"age:{age_group}")
    return out
