"""A time-split training set on the real HetRec Last.fm data (artists as communities, real friendships)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from belong.features.catalog import Catalog
from belong.features.training import build_training_set

pytestmark = [pytest.mark.data, pytest.mark.slow]


@pytest.fixture(scope="module")
def lastfm(data_dir):
    from belong.datasets import load_world

    return load_world("hetrec-lastfm", data_dir)


def test_time_split_candidates_on_lastfm(lastfm):
    ev = lastfm.events
    joins = ev.filter(pc.equal(ev["type"], "join"))
    cut = int(np.quantile(joins["ts_us"].to_numpy(), 0.8))
    rows = joins.to_pylist()
    before = {}
    after = {}
    for r in rows:  # a join exactly at the cut is neither seen by the row nor a label (strictly after only)
        if r["ts_us"] != cut:
            side = before if r["ts_us"] < cut else after
            side.setdefault(r["actor"], set()).add(r["target"])
    friends_before = {}
    for r in ev.filter(pc.equal(ev["type"], "friend_accept")).to_pylist():
        if r["ts_us"] < cut:
            friends_before.setdefault(r["actor"], set()).add(r["target"])
            friends_before.setdefault(r["target"], set()).add(r["actor"])
    rng = random.Random(0)
    users = rng.sample(sorted(u for u in after if u in before), 40)
    communities = sorted(lastfm.communities["id"].to_pylist())
    cand_u, cand_c = [], []
    for u in users:
        new = sorted(after[u] - before[u])[:3]
        for c in new + rng.sample(communities, 5) + sorted(before[u])[:2]:
            cand_u.append(u)
            cand_c.append(c)
    candidates = pa.table({"user_id": cand_u, "item_id": cand_c, "ts_us": [cut] * len(cand_u)})
    catalog = Catalog.from_tables(lastfm.users, lastfm.communities, lastfm.content)
    table = build_training_set(ev, "communities", candidates, catalog=catalog, window_s=None)
    assert table.num_rows == len(cand_u)
    for r in table.to_pylist():
        u, c = r["user_id"], r["item_id"]
        assert r["joined"] == int(c in after.get(u, set()) and c not in before[u])
        assert r["uc_is_member"] == int(c in before[u])
        assert r["user_communities_joined"] == len(before[u])
        assert r["user_friend_count"] == len(friends_before.get(u, ()))
    assert 0 < pc.sum(table["joined"]).as_py() < table.num_rows
