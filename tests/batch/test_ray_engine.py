"""The Ray engine against the in-process one on a small simulated world, on a real local Ray cluster started by the
code (:func:`belong.batch.session`): the same scored rows, the same stored candidate lists, the same training
lists, and a LightGBMTrainer order model equal to the in-process one with one worker (within tolerance with two)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from belong.batch import Engine, parse_engine
from belong.errors import ValidationError

ray = pytest.importorskip("ray", reason="the Ray engine needs ray[data,train]")
pytestmark = pytest.mark.slow
REDIS_URL = os.environ.get("BELONG_TEST_REDIS_URL")

SURFACE = """
surface = "communities"
[[sources]]
type = "co_membership"
model = "itemknn"
k = 100
[[sources]]
type = "friends_joined"
k = 50
[[sources]]
type = "trending"
k = 50
[[hydrators]]
type = "social"
[[filters]]
type = "safety_rules"
[scorer]
type = "lgbm_ranker"
users = 300
rounds = 60
min_data_in_leaf = 20
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Path]:
    """(store, models dir, surface TOML): 300 simulated people, trained in process."""
    from belong.bench.ray_batch import simulate_store
    from belong.training.train import train

    tmp = tmp_path_factory.mktemp("ray-world")
    simulate_store(tmp / "store", 300, 40, seed=3)
    toml = tmp / "ranked_small.toml"
    toml.write_text(SURFACE, encoding="utf-8")
    train(str(tmp / "store"), tmp / "models", [str(toml)])
    return str(tmp / "store"), tmp / "models", toml


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster of 2 CPUs for the module (jobs inside it reuse it)."""
    from belong.batch import session

    with session(parse_engine("ray", 2)) as info:
        assert ray.is_initialized() and info["address"] == "local"
        yield info


def test_engine_options_are_checked() -> None:
    assert parse_engine(None) == Engine()
    assert parse_engine("RAY", 2).workers == 2
    for args, field in [(("spark",), "engine"), (("ray", 0), "ray_workers"), (("inprocess", 2), "engine"),
                        (("ray", 1, " "), "ray_address")]:
        with pytest.raises(ValidationError) as bad:
            parse_engine(*args)
        assert bad.value.field == field


def test_batch_scores_are_the_same_on_ray(world, cluster, tmp_path: Path) -> None:
    from belong.batch.score import score

    store, models, _ = world
    here = score(store, tmp_path / "here.parquet", parse_engine("inprocess"), models_dir=models)
    there = score(store, tmp_path / "ray.parquet", parse_engine("ray", 2), models_dir=models, block=64)
    a, b = pq.read_table(tmp_path / "here.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert here["users"] == there["users"] == 300 and a.num_rows > 0
    assert a.column_names == ["user", "rank", "item", "score"]
    assert a.equals(b)  # same people, items, ranks and scores, in the same order


@pytest.mark.redis
@pytest.mark.skipif(not REDIS_URL, reason="needs BELONG_TEST_REDIS_URL")
def test_precomputed_lists_are_the_same_on_ray(world, cluster) -> None:
    import secrets

    import redis

    from belong.batch.precompute import precompute as on_ray
    from belong.domain import Surface
    from belong.serve.precomputed import decode
    from belong.serve.precomputed import precompute as here

    store, models, _ = world
    client = redis.Redis.from_url(REDIS_URL)
    tag = secrets.token_hex(4)
    pa_, pb = f"belong:test:ray:{tag}:a:", f"belong:test:ray:{tag}:b:"
    try:
        ma = here(store, REDIS_URL, models_dir=models, prefix=pa_, surfaces=[Surface.COMMUNITIES])
        mb = on_ray(store, REDIS_URL, parse_engine("ray", 2), models_dir=models, prefix=pb,
                    surfaces=[Surface.COMMUNITIES], block=50)
        assert ma["lists"] == mb["lists"] == 300 and ma["version"] == mb["version"]
        keys = sorted(k.decode()[len(pa_):] for k in client.scan_iter(f"{pa_}*", count=1000))
        assert len(keys) == 301  # every person's list and the meta
        for key in keys:
            if key.endswith(":meta"):
                continue
            a, b = decode(client.get(pa_ + key)), decode(client.get(pb + key))
            assert a[1] == b[1], key  # the rows; a[0] is when it was made
    finally:
        for prefix in (pa_, pb):
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)


def test_training_lists_and_lightgbm_trainer(world, cluster) -> None:
    from belong import surfaces
    from belong.batch.train import ray_lists_runner, ray_order_trainer
    from belong.ranking.dataset import build_lists
    from belong.ranking.ranker import Ranker
    from belong.ranking.runners import installed
    from belong.training.train import load_state

    store, _, toml = world
    state, _ = load_state(store)
    pipeline = surfaces.load(str(toml))
    here = build_lists(state, pipeline.fresh, fraction=0.2, max_users=300, seed=0)
    with installed(lists=ray_lists_runner(parse_engine("ray", 2))):
        there = build_lists(state, pipeline.fresh, fraction=0.2, max_users=300, seed=0)
    assert here.groups.size > 100
    assert np.array_equal(here.groups, there.groups) and np.array_equal(here.users, there.users)
    assert np.array_equal(here.X, there.X, equal_nan=True) and np.array_equal(here.y, there.y)

    base = Ranker(rounds=60, min_data_in_leaf=20).fit(here)
    runs: dict = {}
    with installed(order=ray_order_trainer(parse_engine("ray", 1), Path(str(toml)).parent / "ray1", runs)):
        one = Ranker(rounds=60, min_data_in_leaf=20).fit(here)
    assert runs["order_runs"][0]["workers"] == 1
    assert one.metrics["best_iteration"] == base.metrics["best_iteration"]
    for name in ("ndcg@20", "recall@20"):
        assert abs(one.metrics["ranker"][name] - base.metrics["ranker"][name]) <= 1e-6
    assert np.allclose(one.score(here.X[:500]), base.score(here.X[:500]), atol=1e-6)

    with installed(order=ray_order_trainer(parse_engine("ray", 2), Path(str(toml)).parent / "ray2", runs)):
        two = Ranker(rounds=60, min_data_in_leaf=20).fit(here)
    assert runs["order_runs"][1]["workers"] == 2
    # two workers: each builds histograms on its half of the whole lists; a real model, near the one-worker one
    assert two.metrics["ranker"]["ndcg@20"] > 0.5 * base.metrics["ranker"]["ndcg@20"]
    assert two.metrics["ranker"]["ndcg@20"] > two.metrics["sources"]["trending"]["ndcg@20"] - 0.05
