"""Experiment metrics over the event log, per unit of analysis (the exposed user), from its first exposure.

A user's **first exposure** ``f`` is the time of the first answer that served it a list in the experiment
(``experiment_exposures``). Each metric counts events of the user in ``[f, cut)`` (``cut``: the end of the
analysis, or the end of a day for the per-day reading) and, for CUPED, the same metric in the pre-exposure window
``[f - 14 days, f)``; a user with no event at all before ``f`` has no history: its pre value is NaN.

=================  ==========================================================================================
metric             per user
=================  ==========================================================================================
``joins``          joins of a community shown to the user in an impression at or before the join
``joins_held_7d``  of those joins, the ones not left within 7 days (counted once the 7 days are over)
``messages``       messages sent (the event's value: the number of messages)
``pymk_accepts``   friendships accepted (either side) with a person shown to the user on the people surface at or
                   before the acceptance
``join_rate``      ``joins`` / impressions shown to the user (ratio metric: numerator and denominator per user,
                   read with the delta method)
``reports``        reports made by the user (guardrail)
``blocks``         blocks made by the user (guardrail)
=================  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from belong.experiments.store import Exposure

DAY_US = 86_400_000_000
PRE_WINDOW_US = 14 * DAY_US
HOLD_US = 7 * DAY_US
TYPES = ["join", "leave", "message", "friend_accept", "report", "block", "impression"]
RATIO = {"join_rate": ("joins", "impressions")}


@dataclass
class UnitTable:
    """One row per exposed user: arm, randomisation unit, first exposure, and per metric its value after exposure
    (``post``) and in the pre-exposure window (``pre``, NaN without history)."""

    users: np.ndarray
    arms: np.ndarray
    units: np.ndarray
    first_us: np.ndarray
    post: dict[str, np.ndarray] = field(default_factory=dict)
    pre: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.users)

    def values(self, metric: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """(y, denominator or None, pre-exposure covariate) of ``metric`` (a ratio metric's covariate is its
        numerator's pre value)."""
        if metric in RATIO:
            num, den = RATIO[metric]
            return self.post[num], self.post[den], self.pre[num]
        return self.post[metric], None, self.pre[metric]

    def select(self, mask: np.ndarray) -> UnitTable:
        return UnitTable(self.users[mask], self.arms[mask], self.units[mask], self.first_us[mask],
                         {k: v[mask] for k, v in self.post.items()}, {k: v[mask] for k, v in self.pre.items()})


def first_exposures(exposures: Sequence[Exposure]) -> pd.DataFrame:
    """user, arm, unit, first exposure time (the arm and unit of the first exposure), one row per user."""
    if not exposures:
        return pd.DataFrame({"user": pd.Series([], dtype=str), "arm": pd.Series([], dtype=str),
                             "unit": pd.Series([], dtype=str), "first_us": pd.Series([], dtype=np.int64)})
    df = pd.DataFrame({"user": [e.user_id for e in exposures], "arm": [e.arm for e in exposures],
                       "unit": [e.unit for e in exposures], "first_us": [e.ts_us for e in exposures]})
    return df.sort_values(["first_us"], kind="stable").drop_duplicates("user").reset_index(drop=True)


def _contributions(ev: pd.DataFrame, users: set[str]) -> pd.DataFrame:
    """(user, metric, ts, value): every event's contribution to a metric of one exposed user, at the time it
    becomes known."""
    parts: list[pd.DataFrame] = []

    def add(df: pd.DataFrame, metric: str, ts: pd.Series, value: pd.Series | float = 1.0, later_us: int = 0) -> None:
        """``ts``: when the event happened (its window); known ``later_us`` after it."""
        if len(df):
            at = np.asarray(ts, dtype=np.int64)
            parts.append(pd.DataFrame({"user": df["actor"].to_numpy(), "metric": metric, "ts": at,
                                       "known": at + later_us,
                                       "value": np.broadcast_to(np.asarray(value, dtype=np.float64), len(df))}))

    ev = ev[ev["actor"].isin(users) | ((ev["type"] == "friend_accept") & ev["target"].isin(users))]
    imp = ev[ev["type"] == "impression"]
    add(imp[imp["target_kind"] == "community"], "impressions", imp.loc[imp["target_kind"] == "community", "ts_us"])
    never = np.iinfo(np.int64).max

    def first_shown(kind: str, pairs: pd.DataFrame) -> np.ndarray:
        """When the pair's target was first shown to its actor (``never`` when it was not)."""
        sel = imp[imp["target_kind"] == kind]
        shown = sel.groupby(["actor", "target"], sort=False)["ts_us"].min().to_dict()
        return np.fromiter((shown.get(k, never) for k in zip(pairs["actor"], pairs["target"], strict=True)),
                           dtype=np.int64, count=len(pairs))

    joins = ev[ev["type"] == "join"]
    rec = joins[first_shown("community", joins) <= joins["ts_us"].to_numpy()]
    add(rec, "joins", rec["ts_us"])
    if len(rec):
        leaves = ev[ev["type"] == "leave"][["actor", "target", "ts_us"]].rename(columns={"ts_us": "leave_us"})
        m = rec[["actor", "target", "ts_us"]].reset_index().merge(leaves, on=["actor", "target"], how="left")
        m["left"] = (m["leave_us"] > m["ts_us"]) & (m["leave_us"] <= m["ts_us"] + HOLD_US)
        left = m.groupby("index")["left"].any()
        held = rec[~left.reindex(rec.index, fill_value=False).to_numpy(dtype=bool)]
        add(held, "joins_held_7d", held["ts_us"], later_us=HOLD_US)
    msg = ev[ev["type"] == "message"]
    add(msg, "messages", msg["ts_us"], msg["value"])
    for kind, metric in (("report", "reports"), ("block", "blocks")):
        sel = ev[ev["type"] == kind]
        add(sel, metric, sel["ts_us"])
    acc = ev[ev["type"] == "friend_accept"]
    if len(acc):  # either side of the friendship may be the exposed user
        both = pd.concat([acc[["actor", "target", "ts_us"]],
                          acc[["target", "actor", "ts_us"]].rename(columns={"target": "actor", "actor": "target"})])
        both = both[both["actor"].isin(users)]
        hit = both[first_shown("user", both) <= both["ts_us"].to_numpy()]
        add(hit, "pymk_accepts", hit["ts_us"])
    if not parts:
        return pd.DataFrame({"user": pd.Series([], dtype=str), "metric": pd.Series([], dtype=str),
                             "ts": pd.Series([], dtype=np.int64), "known": pd.Series([], dtype=np.int64),
                             "value": pd.Series([], dtype=np.float64)})
    return pd.concat(parts, ignore_index=True)


BASE_METRICS = ("joins", "joins_held_7d", "messages", "pymk_accepts", "reports", "blocks", "impressions")


class MetricData:
    """The events an analysis needs, read once; :meth:`table` gives the per-unit table at any cut."""

    def __init__(self, events: pd.DataFrame, exposures: Sequence[Exposure]) -> None:
        self.first = first_exposures(exposures)
        users = set(self.first["user"])
        self.contrib = _contributions(events, users)
        first = self.first.set_index("user")["first_us"]
        self.contrib["first_us"] = self.contrib["user"].map(first).to_numpy(dtype=np.int64)
        act = events[events["actor"].isin(users)].groupby("actor")["ts_us"].min()
        self.first_event = self.first["user"].map(act).to_numpy(dtype=np.float64)  # NaN: no event at all

    def table(self, cut_us: int) -> UnitTable:
        """Units first exposed before ``cut_us``, metrics in [first exposure, cut)."""
        keep = (self.first["first_us"] < cut_us).to_numpy()
        f = self.first[keep]
        idx = pd.Index(f["user"])
        c = self.contrib
        has_history = self.first_event[keep] < f["first_us"].to_numpy()
        post_rows = c[(c["ts"] >= c["first_us"]) & (c["known"] < cut_us)]
        pre_rows = c[(c["known"] < c["first_us"]) & (c["ts"] >= c["first_us"] - PRE_WINDOW_US)]
        post = post_rows.groupby(["metric", "user"])["value"].sum()
        pre = pre_rows.groupby(["metric", "user"])["value"].sum()
        out = UnitTable(f["user"].to_numpy(dtype=object), f["arm"].to_numpy(dtype=object),
                        f["unit"].to_numpy(dtype=object), f["first_us"].to_numpy(dtype=np.int64))
        for m in BASE_METRICS:
            out.post[m] = _values(post, m, idx)
            out.pre[m] = np.where(has_history, _values(pre, m, idx), np.nan)
        return out


def _values(series: pd.Series, metric: str, idx: pd.Index) -> np.ndarray:
    if metric not in series.index.get_level_values(0):
        return np.zeros(len(idx))
    return series.xs(metric).reindex(idx, fill_value=0.0).to_numpy(dtype=np.float64)


def read_events(store_spec: str, start_us: int, end_us: int) -> pd.DataFrame:
    """The events metrics read, in ``[start_us, end_us)``, as a DataFrame."""
    from belong.eventlog import open_store

    with open_store(store_spec, create=False) as store:
        table = store.read_events(start_us, end_us, TYPES)
    return table.select(["ts_us", "type", "actor", "target", "target_kind", "value"]).to_pandas()


def experiment_impressions(store_spec: str, exposures: Sequence[Exposure]) -> pd.DataFrame:
    """The impressions of an experiment's answers, each with its experiment and arm (joined by request id):
    request_id, user, item, position, propensity, ts_us, experiment, arm, unit."""
    from belong.eventlog import open_store

    cols = ["request_id", "user", "item", "position", "propensity", "ts_us", "experiment", "arm", "unit"]
    if not exposures:
        return pd.DataFrame({c: [] for c in cols})
    start = min(e.ts_us for e in exposures)
    with open_store(store_spec, create=False) as store:
        table = store.read_events(start, None, ["impression"])
    imp = table.select(["request_id", "actor", "target", "position", "propensity", "ts_us"]).to_pandas()
    imp = imp.rename(columns={"actor": "user", "target": "item"})
    exp = pd.DataFrame({"request_id": [e.request_id for e in exposures], "experiment": [e.name for e in exposures],
                        "arm": [e.arm for e in exposures], "unit": [e.unit for e in exposures]})
    return imp.merge(exp, on="request_id", how="inner")[cols].sort_values(["ts_us", "request_id", "position"],
                                                                         ignore_index=True)
