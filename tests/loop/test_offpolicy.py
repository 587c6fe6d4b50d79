"""Scenario (d) on a tiny world: the off-policy estimate of the greedy blend from the exploring blend's logs, held
against the greedy arm's online value and truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.errors import ValidationError
from belong.loop import report, runner, scenario
from belong.loop.offpolicy import OpeConfig

SURF = Path(scenario.__file__).parent / "scenarios" / "surfaces"
ARMS = (f'[[arms]]\nname = "explore"\nsurface = "{SURF / "communities_explore.toml"}"\n'
        f'[[arms]]\nname = "greedy"\nsurface = "{SURF / "communities_greedy.toml"}"\n')


def tiny_ope(tmp_path: Path, days: int = 2) -> scenario.Scenario:
    p = tmp_path / "ope.toml"
    p.write_text('name = "tinyope"\ncontrol = "explore"\n[world]\nusers = 250\ncommunities = 30\nseed = 5\n'
                 f'[run]\ndays = {days}\nretrain_days = 2\nk = 6\ntruth_sample = 80\n'
                 '[ope]\nlogging = "explore"\nlists_per_day = 40\n' + ARMS)
    return scenario.load(p)


@pytest.mark.parametrize("mode", ["inprocess", "direct"])
def test_offpolicy_estimate_online_and_truth(tmp_path, mode):
    days = 3  # past the first day: the lists then depend on the request seed (pixie's walks), which the re-run
    # must ask with as the backend did
    result = runner.run(tiny_ope(tmp_path, days).with_overrides(mode=mode))
    ope = result["offpolicy"]
    assert result["backend"]["mode"] == mode
    assert ope["logging"] == "explore" and ope["slot_position"] == 3
    assert 0 < ope["logged_lists"] <= 40 * days
    (t,) = ope["targets"]
    assert t["arm"] == "greedy"
    # the logging policy re-run on each logged context gives exactly the logged propensities
    assert t["info"]["logging_propensity_mismatches"] == 0
    assert t["info"]["slot_rounds"] == ope["logged_lists"]
    assert t["online"]["per_list"]["n"] > 0 and t["truth"]["per_list"] > 0
    assert t["truth"]["slot_per_list"] <= t["truth"]["per_list"]
    by = {(r["level"], r["estimator"]): r for r in t["estimates"]}
    assert {("slot", "ips"), ("slot", "snips"), ("slot", "dr"), ("list", "pseudo_inverse")} <= set(by)
    for r in by.values():
        assert r["warning"] is None  # the greedy policy is supported by the exploring one
        assert r["value"] is not None and r["ci_low"] <= r["value"] <= r["ci_high"]
        assert r["bias_vs_truth"] == pytest.approx(r["value"] - r["truth"])
    html = report.render(result, timings=False)
    assert "Off-policy" in html and "pseudo_inverse" in html


def test_ope_table_names_the_field():
    base = 'name = "x"\ncontrol = "explore"\n' + ARMS
    assert OpeConfig.of(scenario.parse(base)) is None
    assert OpeConfig.of(scenario.parse(base + '[ope]\nlogging = "greedy"\n')) == OpeConfig(1, 200)
    for extra, field in (('[ope]\nlogging = "nope"\n', "ope.logging"),
                         ('[ope]\nlists_per_day = 0\n', "ope.lists_per_day"),
                         ('[ope]\nwindow = 3\n', "ope")):
        with pytest.raises(ValidationError) as exc:
            OpeConfig.of(scenario.parse(base + extra))
        assert exc.value.field == field

