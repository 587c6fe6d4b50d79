"""The closed loop on a tiny world: the response model's pieces against independent computations, the runner's
determinism, scenario validation, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from belong.errors import ValidationError
from belong.loop import report, runner, scenario
from belong.loop.latents import latents
from belong.loop.response import PARAMS, ResponseModel
from belong.simulate import TOPIC_NAMES, SimConfig, simulate_world
from cli_runner import run_cli

TREND = Path(scenario.__file__).parent / "scenarios" / "surfaces" / "trending.toml"


def _tiny(tmp_path: Path, **run: int) -> Path:
    opts = {"days": 2, "retrain_days": 1, "k": 5, "truth_sample": 40, **run}
    p = tmp_path / "tiny.toml"
    p.write_text(
        'name = "tiny"\ncontrol = "trending"\n[world]\nusers = 150\ncommunities = 30\nseed = 5\n[run]\n'
        + "".join(f"{k} = {v}\n" for k, v in opts.items())
        + f'[[arms]]\nname = "trending"\nsurface = "{TREND}"\n[[arms]]\nname = "blend"\nsurface = "communities"\n')
    return p


def test_latents_are_the_simulators():
    """The redrawn interests are the ones the simulator used: every listed interest is among the person's three
    largest latent topics, in that order."""
    cfg = SimConfig(300, 30, 7, chunk_users=120)
    world = simulate_world(300, 30, 7, chunk_users=120)
    lat = latents(cfg)
    assert lat.theta.shape == (300, len(TOPIC_NAMES)) and lat.phi.shape == (30, len(TOPIC_NAMES))
    listed = world.users.column("interests").to_pylist()
    ids = world.users.column("id").to_pylist()
    checked = 0
    for uid, interests in zip(ids, listed, strict=True):
        if interests:
            top = [TOPIC_NAMES[t] for t in np.argsort(-lat.theta[int(uid[1:])])[: len(interests)]]
            assert list(interests) == top
            checked += 1
    assert checked > 50


def test_expected_joins_match_sampling():
    """The truth (no sampling) equals the mean of the sampled response on the same list, to Monte Carlo error."""
    lat = latents(SimConfig(200, 40, 2))
    m = ResponseModel(lat, PARAMS)
    comms = np.arange(10)
    friends = np.array([0, 1, 0, 3, 0, 0, 2, 0, 0, 0], float)
    before = np.array([0, 0, 1, 0, 2, 0, 0, 0, 1, 0], float)
    u = int(np.argmax(lat.theta @ lat.phi[:10].T).item() // 10)
    exact = m.expected_joins(u, comms, friends, before)
    rng = np.random.default_rng(0)
    n = 200_000
    examined = rng.random((n, 10)) < (np.arange(10) + 1.0) ** -PARAMS.position_bias
    aff = np.array([lat.theta[u] @ lat.phi[c] * (1.0 if lat.user_locale[u] == lat.comm_locale[c] else
                                                 0.3 if lat.comm_locale[c] == 0 else 0.05) for c in comms])
    z = (PARAMS.intercept + PARAMS.fit * aff + PARAMS.friends * np.log1p(friends)
         + np.where(before == 0, PARAMS.novelty, 0) - PARAMS.fatigue * before)
    joined = examined & (rng.random((n, 10)) < 1 / (1 + np.exp(-z)))
    sampled = joined.sum(axis=1)
    assert abs(sampled.mean() - exact) < 4 * sampled.std() / np.sqrt(n)


def test_same_seed_same_report(tmp_path):
    sc = scenario.load(_tiny(tmp_path))
    a, b = runner.run(sc), runner.run(sc)
    ra, rb = report.render(a, timings=False), report.render(b, timings=False)
    assert ra == rb
    drop = ("timing_s", "seconds_per_day", "cpu_seconds_per_day", "retrains")
    assert {k: v for k, v in a.items() if k not in drop} == {k: v for k, v in b.items() if k not in drop}
    e = a["effects"][0]
    assert e["arm"] == "blend" and e["control"] == "trending"
    assert e["ci_low"] <= e["effect"] <= e["ci_high"]
    assert e["bias"] == pytest.approx(e["effect"] - e["true_effect"])
    assert sum(a["assigned"].values()) == 150
    assert [r["day"] for r in a["retrains"]] == [0, 1]
    joins = sum(m["joins"] for r in a["daily"] for m in r["arms"].values())
    assert joins > 0
    c = runner.run(sc.with_overrides(seed=6))
    assert report.render(c, timings=False) != ra


def test_user_and_cluster_variants(tmp_path):
    """Scenario (c)'s shape: one run per unit of randomisation on the same world, effects labelled by unit."""
    sc = scenario.load(_tiny(tmp_path, days=1)).with_overrides(units=("user", "cluster"))
    result = runner.run_all(sc)
    assert [v["scenario"]["unit"] for v in result["variants"]] == ["user", "cluster"]
    assert [e["unit"] for e in result["effects"]] == ["user", "cluster"]
    assert result["variants"][1]["units"] < result["variants"][0]["units"] == 150
    html = report.render(result, timings=False)
    assert html.count("<h1>") == 3 and "cluster" in html


def test_cluster_unit_assigns_whole_clusters(tmp_path):
    sc = scenario.load(_tiny(tmp_path, days=1))
    sc = sc.with_overrides(unit="cluster")
    loop = runner.Loop(sc)
    arms_by_unit: dict[str, set[int]] = {}
    for unit, arm in zip(loop.unit_of, loop.arm, strict=True):
        arms_by_unit.setdefault(unit, set()).add(int(arm))
    assert all(len(s) == 1 for s in arms_by_unit.values())
    assert len(arms_by_unit) < 150


@pytest.mark.parametrize(("text", "field"), [
    ('[[arms]]\nname="a"\nsurface="communities"\n', "arms"),
    ('[[arms]]\nname="a"\nsurface="communities"\n[[arms]]\nname="a"\nsurface="communities"\n', "arms"),
    ('control="zz"\n[[arms]]\nname="a"\nsurface="x"\n[[arms]]\nname="b"\nsurface="y"\n', "control"),
    ('[run]\nunit="team"\n[[arms]]\nname="a"\nsurface="x"\n[[arms]]\nname="b"\nsurface="y"\n', "run.unit"),
    ('[run]\ndays=0\n[[arms]]\nname="a"\nsurface="x"\n[[arms]]\nname="b"\nsurface="y"\n', "run.days"),
    ('[[arms]]\nname="a"\nsurface="x"\nweight=-1\n[[arms]]\nname="b"\nsurface="y"\n', "arms[0].weight"),
    ('[run]\nunits=["user","team"]\n[[arms]]\nname="a"\nsurface="x"\n[[arms]]\nname="b"\nsurface="y"\n', "run.units"),
    ('[run]\nmode="carrier-pigeon"\n[[arms]]\nname="a"\nsurface="x"\n[[arms]]\nname="b"\nsurface="y"\n', "run.mode"),
    ("not toml [", "scenario"),
])
def test_bad_scenarios_name_the_field(text, field):
    with pytest.raises(ValidationError) as exc:
        scenario.parse(text)
    assert exc.value.field == field


def test_shipped_scenarios_parse():
    assert {"ranked_vs_trending", "exploration", "spillover_user_vs_cluster"} <= set(scenario.names())
    for name in scenario.names():
        sc = scenario.load(name)
        assert len(sc.arms) >= 2


def test_cli_run_json_and_report(tmp_path, monkeypatch, capsys):
    out = tmp_path / "r.html"
    code, stdout, _ = run_cli(monkeypatch, capsys, "loop", "run", str(_tiny(tmp_path, days=1)), "--json",
                              "--report", str(out))
    assert code == 0
    result = json.loads(stdout)
    assert result["effects"][0]["arm"] == "blend"
    assert "true_effect" in out.read_text()
    code, _, err = run_cli(monkeypatch, capsys, "loop", "run", "no_such_scenario")
    assert code == 2 and "scenario" in err
