"""``belong train`` writes the state snapshot beside its artifacts; a version loaded from the artifact and the
snapshot plus the log's tail answers every surface exactly as one loaded from the whole log does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from belong.datasets import World, write_world
from belong.domain import Surface
from belong.eventlog import open_store
from belong.pipeline.types import Request
from belong.serve.versions import load_version
from belong.training.locate import snapshot_dir
from belong.training.train import train


@pytest.fixture(scope="module")
def trained(sim_world, surface_toml, tmp_path_factory):
    """(store, models dir, artifact): trained on the first 95% of the log; the rest appended after."""
    root = tmp_path_factory.mktemp("snapstart")
    events = sim_world.events.sort_by([("ts_us", "ascending")])
    k = int(events.num_rows * 0.95)
    head = World(users=sim_world.users, communities=sim_world.communities, content=sim_world.content,
                 events=events.slice(0, k))
    store = root / "store"
    with open_store(store) as st:
        write_world(st, head, progress=False)
    out = root / "models"
    result = train(str(store), out, [str(surface_toml), "people", "content"])
    with open_store(store) as st:
        st.append(events.slice(k))
    return store, out, Path(result["path"]), result, events.num_rows - k


def test_train_writes_the_snapshot_at_the_log_position_it_read(trained):
    store, out, _, result, _ = trained
    assert snapshot_dir(out) == out / "snapshot"
    assert result["snapshot"]["position"] == result["data_window"]["position"] == result["data_window"]["events"]


def test_a_version_from_the_snapshot_answers_as_one_from_the_whole_log(trained):
    store, out, artifact, _, tail = trained
    from_snap = load_version(str(store), artifact, snapshot=snapshot_dir(out))
    from_log = load_version(str(store), artifact)
    started = from_snap.meta["state_from"]
    assert started["tail_events"] == tail > 0 and from_log.meta["state_from"] == "log"
    assert from_snap.state.n_users == from_log.state.n_users
    users = from_log.state.users.ids[:: max(1, from_log.state.n_users // 60)]
    compared = 0
    for surface in Surface:
        for u in users:
            req = Request(u, surface, k=10, explain=False)
            a = from_snap.pipelines[surface].run(req).items
            b = from_log.pipelines[surface].run(Request(u, surface, k=10, explain=False)).items
            assert [i.id for i in a] == [i.id for i in b], (surface, u)
            np.testing.assert_allclose([i.score for i in a], [i.score for i in b], rtol=1e-6)
            compared += len(b)
    assert compared > 100


def test_a_snapshot_of_another_store_is_not_used(trained, tmp_path):
    store, out, artifact, _, _ = trained
    other = tmp_path / "other"
    with open_store(store) as src, open_store(other) as dst:
        dst.upsert_users(src.users())
        dst.upsert_communities(src.communities())
        dst.upsert_content(src.content())
        dst.append(src.read_events())
    version = load_version(str(other), artifact, snapshot=snapshot_dir(out))
    assert version.meta["state_from"] == "log"


def test_forgetting_a_user_deletes_the_snapshot_that_holds_them(tmp_path, sim_world):
    from belong.state import snapshot as snap
    from belong.training.forget import forget_user_data

    store = tmp_path / "store"
    with open_store(store) as st:
        write_world(st, sim_world, progress=False)
    models = tmp_path / "models"
    snap.take(store, models / "snapshot")
    user = sim_world.users.column("id")[0].as_py()
    with open_store(store) as st:
        out = forget_user_data(st, None, user, models)
    assert out["snapshot_removed"] == str(models / "snapshot") and snapshot_dir(models) is None
    with open_store(store) as st:
        assert forget_user_data(st, None, user, models)["snapshot_removed"] is None
