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
    return scenario.load(p).with_overrides(mode="direct")  # the direct backend: the loop's own state


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


def test_truth_integrates_over_the_times_shown():
    """The truth's expectation over how often an item was shown (Binomial(days listed, P(visit))) equals the mean of
    the sampled response over simulated visit histories, to Monte Carlo error."""
    from belong.loop.latents import latents
    from belong.loop.response import PARAMS, ResponseModel
    from belong.simulate import SimConfig

    m = ResponseModel(latents(SimConfig(200, 40, 2)), PARAMS)
    u = int(np.argmax(m.visit_p))
    comms = np.arange(8)
    friends = np.array([0, 1, 0, 2, 0, 0, 1, 0], float)
    listed = np.array([0, 1, 2, 3, 5, 0, 4, 1])
    exact = m.expected_flat_unseen(np.array([u]), [comms], [friends], [listed])
    rng = np.random.default_rng(1)
    n = 100_000
    shown = rng.binomial(listed[None, :], m.visit_p[u], size=(n, len(comms)))
    sampled = np.stack([m.join_p(u, comms, friends, shown[i]) for i in range(0, n, 50)])
    mc = sampled.mean(axis=0) * m.examine(len(comms))
    se = sampled.std(axis=0) / np.sqrt(len(sampled)) * m.examine(len(comms))
    assert np.all(np.abs(mc - exact) < 5 * se + 1e-12)
    never = listed == 0  # never listed: the plain expectation (novelty, no fatigue)
    plain = m.expected_flat(np.array([u]), [comms], [friends], [np.zeros(len(comms))])
    assert np.allclose(exact[never], plain[never])
