"""The loop's batched engine against the plain computations it replaces: one batch per arm serves what one request
each serves (items and propensities), and "friends already there" equals the state's own intersection."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from belong.domain import Surface
from belong.loop import runner, scenario
from belong.pipeline import Request

SURF = Path(scenario.__file__).parent / "scenarios" / "surfaces"


def _scenario(tmp_path: Path) -> scenario.Scenario:
    p = tmp_path / "fast.toml"
    p.write_text('name = "fast"\ncontrol = "explore"\n[world]\nusers = 200\ncommunities = 30\nseed = 8\n'
                 '[run]\ndays = 1\nk = 6\ntruth_sample = 50\n'
                 f'[[arms]]\nname = "explore"\nsurface = "{SURF / "communities_explore.toml"}"\n'
                 f'[[arms]]\nname = "trending"\nsurface = "{SURF / "trending.toml"}"\n')
    return scenario.load(p)


def test_batched_serving_is_one_request_each(tmp_path):
    loop = runner.Loop(_scenario(tmp_path))
    loop.retrain(0)
    users = list(range(0, 200, 3))
    for arm in (0, 1):
        slates = loop.backend.serve(arm, users, 4)
        pipe = loop.backend.pipelines[arm]  # type: ignore[attr-defined]
        explored = 0
        for u, s in zip(users, slates, strict=True):
            resp = pipe.run(Request(f"u{u}", Surface.COMMUNITIES, k=6, explain=False, seed=4))
            assert s.comms.tolist() == [int(it.id[1:]) for it in resp.items]
            assert s.propensity.tolist() == [it.features.get("propensity", 1.0) for it in resp.items]
            explored += int((s.propensity < 0.5).any())
        if arm == 0:
            assert explored > 0  # the exploring arm did explore, with its propensity logged


def test_friends_there_is_the_intersection(tmp_path):
    loop = runner.Loop(_scenario(tmp_path))
    rng = np.random.default_rng(0)
    users = np.arange(0, 200, 2)
    comms = [rng.choice(30, 5, replace=False) for _ in users]
    got = loop.friends_there(users, comms)
    st = loop.state
    cidx = st.communities.index
    nonzero = 0
    for u, cs, g in zip(users.tolist(), comms, got, strict=True):
        friends = st.friends_of(int(loop.su[u]))
        want = [np.intersect1d(friends, st.members_of(cidx[f"c{c}"])).size for c in cs.tolist()]
        assert g.tolist() == want
        nonzero += sum(w > 0 for w in want)
    assert nonzero > 0


def test_partial_results_after_each_day(tmp_path, monkeypatch, capsys):
    """``--partial FILE``: after every day but the last, the result so far (a long run's figures survive)."""
    import json

    from cli_runner import run_cli

    sc = tmp_path / "fast.toml"
    _scenario(tmp_path)
    part = tmp_path / "partial.json"
    code, stdout, _ = run_cli(monkeypatch, capsys, "loop", "run", str(sc), "--days", "2", "--json", "--partial",
                              str(part))
    assert code == 0
    final, first = json.loads(stdout), json.loads(part.read_text())
    assert first["days_done"] == 1 and final["days_done"] == 2
    assert len(first["daily"]) == 1 and first["daily"][0] == final["daily"][0]
    assert set(final["cpu_seconds_per_day"]) == {"serving", "responding", "truth", "retraining"}
