"""Skew test: features served online (materialised rows + pair features on request) equal the offline training
rows for the same entities and time, on the in-process store and on real Redis."""

from __future__ import annotations

import random
import uuid

import pyarrow as pa
import pytest

from belong.domain import Surface
from belong.eventlog import open_store
from belong.features.assemble import hydrate, request_columns
from belong.features.materialize import materialize
from belong.features.online import InProcessFeatureStore, RedisFeatureStore
from belong.features.registry import SURFACE_FEATURES
from belong.features.training import build_training_set


@pytest.fixture(scope="module")
def event_store(world, tmp_path_factory):
    store = open_store(tmp_path_factory.mktemp("skew") / "store")
    store.append(world.events)
    store.upsert_users(world.users_table)
    store.upsert_communities(world.communities_table)
    store.upsert_content(world.content_table)
    yield store
    store.close()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def online(request):
    if request.param == "memory":
        yield InProcessFeatureStore()
        return
    store = RedisFeatureStore(request.getfixturevalue("redis_url"), prefix=f"belong:test:{uuid.uuid4().hex}:")
    yield store
    store.clear()
    store.close()


def test_offline_rows_equal_online_hydration(world, event_store, online):
    rng = random.Random(11)
    for t in world.query_times[1::2]:
        report = materialize(event_store, online, t)
        assert report.as_of_us == t and report.users == len(world.users)
        for surface, items in ((Surface.COMMUNITIES, world.communities), (Surface.PEOPLE, world.users),
                               (Surface.CONTENT, world.content)):
            users = rng.sample(world.users, 5) + ["never-seen"]
            cands = {u: [*rng.sample([i for i in items if i != u], 4), "unknown-item"] for u in users}
            pairs = [(u, c) for u in users for c in cands[u]]
            scores = [rng.random() for _ in pairs]
            rows = pa.table({
                "user_id": [u for u, _ in pairs], "item_id": [c for _, c in pairs], "ts_us": [t] * len(pairs),
                "src_als_score": scores, "src_als_rank": list(range(len(pairs))),
            })
            offline = {
                (r["user_id"], r["item_id"]): r
                for r in build_training_set(event_store, surface, rows, window_s=None).to_pylist()
            }
            columns = [*SURFACE_FEATURES[surface], *request_columns(surface, ["src_als_score", "src_als_rank"])]
            i = 0
            for u in users:
                request = [{"src_als_score": scores[i + j], "src_als_rank": i + j} for j in range(len(cands[u]))]
                i += len(cands[u])
                served = hydrate(online, surface, u, cands[u], request)
                for c, got in zip(cands[u], served, strict=True):
                    want = offline[(u, c)]
                    assert list(got) == columns
                    assert got == {k: want[k] for k in columns}, (surface, u, c, t)
