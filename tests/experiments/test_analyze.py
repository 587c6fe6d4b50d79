"""analyze over a store written by hand: exposures spread over 5 days, a planted effect on messages; per-day
readings are cumulative and the last one is the final reading."""

from __future__ import annotations

import numpy as np
import pytest

from belong.domain import parse_event
from belong.eventlog import open_store
from belong.experiments.analyze import analyze
from belong.experiments.assign import arm_of
from belong.experiments.declaration import parse
from belong.experiments.metrics import DAY_US
from belong.experiments.store import Exposure, open_experiments
from experiment_helpers import declaration

START = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize("unit", ["user", "cluster"])
def test_analyze_per_arm_per_day(store_spec: str, unit: str) -> None:
    store = store_spec
    rng = np.random.default_rng(0)
    events, exposures = [], []
    decl = parse(declaration(start="2026-01-01T00:00:00Z", primary_metric="messages", unit=unit))
    for i in range(400):
        u = f"u{i}"
        unit_id = u if unit == "user" else f"c{i % 80}"  # clusters of 5 users
        arm = arm_of(decl, unit_id)
        first = START + (i % 5) * DAY_US + 3_600_000_000
        exposures.append(Exposure(decl.name, f"r{i}", u, unit_id, arm, "communities", first))
        n_msgs = rng.poisson(3 if arm == "treatment" else 2)
        for j in range(n_msgs):
            events.append(parse_event({"event_id": f"m{i}-{j}", "ts": (first + (j + 1) * 60_000_000) / 1e6,
                                       "type": "message", "actor": u, "target": "c1"}))
    with open_store(store) as st:
        st.append(events)
    with open_experiments(store) as ex:
        ex.create(decl, now_us=START)
        ex.log_exposures(exposures)
    out = analyze(str(store), decl.name, as_of_us=START + 6 * DAY_US)
    assert out["experiment"] == decl.name and len(out["days"]) == 6
    units = [sum(a["users"] for a in d["arms"]) for d in out["days"]]
    assert units == [80, 160, 240, 320, 400, 400]  # exposures arrive 80 a day
    assert out["days"][-1]["arms"] == out["arms"] and out["days"][-1]["metrics"] == out["metrics"]
    # no impressions were logged: the ratio metric is refused by the estimator, with the reason
    assert out["metrics"]["join_rate"] == [] and "denom" in out["skipped_metrics"]["join_rate"]
    assert out["srm"]["counts"] == {a["arm"]: a["units"] for a in out["arms"]}
    assert sum(out["srm"]["counts"].values()) == (400 if unit == "user" else 80)  # randomisation units
    eff = out["metrics"]["messages"][0]
    assert eff["arm"] == "treatment" and eff["ci_low"] <= eff["effect"] <= eff["ci_high"]
    assert eff["ci_low"] > 0  # the planted +1 message per user
