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
