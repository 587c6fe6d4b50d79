"""Training lists generated in forked worker processes are the lists one process makes, in the same order."""

from __future__ import annotations

import numpy as np
import pytest

from belong import surfaces
from belong.errors import ValidationError
from belong.ranking.dataset import build_lists
from belong.ranking.scorer import LgbmRanker


def _lists(sim_state, surface_toml, workers: int, ticks: list[tuple[int, int]]):
    p = surfaces.load(str(surface_toml))
    return build_lists(sim_state, p.fresh, fraction=0.2, max_users=450, seed=0,
                       workers=workers, progress=lambda done, total: ticks.append((done, total)))


def test_two_workers_make_the_same_lists_as_one(sim_state, surface_toml):
    one_ticks: list[tuple[int, int]] = []
    two_ticks: list[tuple[int, int]] = []
    one = _lists(sim_state, surface_toml, 1, one_ticks)
    two = _lists(sim_state, surface_toml, 2, two_ticks)
    assert one.groups.size > 100
    np.testing.assert_array_equal(one.groups, two.groups)
    np.testing.assert_array_equal(one.users, two.users)
    np.testing.assert_array_equal(one.y, two.y)
    np.testing.assert_array_equal(one.X, two.X)  # NaN in the same places, equal elsewhere
    assert one.stats == two.stats
    assert one_ticks[-1] == two_ticks[-1] and one_ticks[-1][0] == one_ticks[-1][1]  # every user reported
    assert [t[0] for t in two_ticks] == sorted(t[0] for t in two_ticks)  # progress only goes up


def test_workers_setting():
    assert LgbmRanker(LgbmRanker.Config(users=500)).list_workers() == 1  # few lists: not worth a process
    assert LgbmRanker(LgbmRanker.Config(users=5000, workers=3)).list_workers() == 3
    with pytest.raises(ValidationError) as err:
        LgbmRanker(LgbmRanker.Config(workers=-1))
    assert err.value.field.endswith(".workers")
