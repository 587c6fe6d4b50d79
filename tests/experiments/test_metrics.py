"""The per-unit table against events counted by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from belong.experiments.metrics import DAY_US, MetricData
from belong.experiments.store import Exposure

T0 = 1_800_000_000_000_000  # a first exposure time
H = 3_600_000_000


def _events(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["ts_us", "type", "actor", "target", "target_kind", "value"])


def test_unit_table_counts_by_hand() -> None:
    ev = _events([
        # a: history before exposure (a message 3 days before, a recommended join 2 days before)
        (T0 - 3 * DAY_US, "message", "a", "c9", "community", 4.0),
        (T0 - 2 * DAY_US - H, "impression", "a", "c8", "community", 1.0),
        (T0 - 2 * DAY_US, "join", "a", "c8", "community", 1.0),
        # a after exposure: shown c1 and c2, joins c1 (recommended), c3 (never shown: not counted), c2 before it
        # was shown (not counted)
        (T0 + H, "impression", "a", "c1", "community", 1.0),
        (T0 + 2 * H, "join", "a", "c2", "community", 1.0),
        (T0 + 3 * H, "impression", "a", "c2", "community", 1.0),
        (T0 + 4 * H, "join", "a", "c1", "community", 1.0),
        (T0 + 5 * H, "join", "a", "c3", "community", 1.0),
        (T0 + 6 * H, "message", "a", "c1", "community", 2.0),
        (T0 + 7 * H, "message", "a", "c1", "community", 3.0),
        (T0 + 8 * H, "report", "a", "zz", "user", 1.0),
        # b (no history): shown c1, joins it and leaves within 7 days; shown person p, p accepts b's request
        (T0 + H, "impression", "b", "c1", "community", 1.0),
        (T0 + 2 * H, "impression", "b", "p", "user", 1.0),
        (T0 + 3 * H, "join", "b", "c1", "community", 1.0),
        (T0 + 2 * DAY_US, "leave", "b", "c1", "community", 1.0),
        (T0 + 3 * DAY_US, "friend_accept", "p", "b", "user", 1.0),
        (T0 + 3 * DAY_US, "friend_accept", "q", "b", "user", 1.0),  # q was never shown to b
        (T0 + 4 * DAY_US, "block", "b", "q", "user", 1.0),
        # someone not exposed
        (T0 + H, "message", "z", "c1", "community", 9.0),
    ])
    exposures = [Exposure("e", "r1", "a", "a", "control", "communities", T0),
                 Exposure("e", "r2", "b", "b", "treatment", "communities", T0 + 30 * 60_000_000),
                 Exposure("e", "r3", "a", "a", "control", "communities", T0 + DAY_US)]
    data = MetricData(ev, exposures)
    t = data.table(T0 + 10 * DAY_US)
    assert list(t.users) == ["a", "b"] and list(t.arms) == ["control", "treatment"]
    assert list(t.first_us) == [T0, T0 + 30 * 60_000_000]
    np.testing.assert_array_equal(t.post["joins"], [1, 1])
    np.testing.assert_array_equal(t.post["joins_held_7d"], [1, 0])
    np.testing.assert_array_equal(t.post["messages"], [5, 0])
    np.testing.assert_array_equal(t.post["impressions"], [2, 1])
    np.testing.assert_array_equal(t.post["pymk_accepts"], [0, 1])
    np.testing.assert_array_equal(t.post["reports"], [1, 0])
    np.testing.assert_array_equal(t.post["blocks"], [0, 1])
    # pre-exposure: a has history (4 messages, one recommended join); b has none (NaN, CUPED's fallback)
    assert t.pre["messages"][0] == 4 and t.pre["joins"][0] == 1 and np.isnan(t.pre["messages"][1])
    y, den, x = t.values("join_rate")
    np.testing.assert_array_equal(y, [1, 1])
    np.testing.assert_array_equal(den, [2, 1])
    # a cut after one day: the joins held 7 days are not known yet, later events are not counted
    d1 = data.table(T0 + DAY_US)
    np.testing.assert_array_equal(d1.post["joins"], [1, 1])
    np.testing.assert_array_equal(d1.post["joins_held_7d"], [0, 0])
    np.testing.assert_array_equal(d1.post["pymk_accepts"], [0, 0])
    # a cut before b's first exposure leaves b out
    assert list(data.table(T0 + 1).users) == ["a"]
