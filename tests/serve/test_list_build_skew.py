"""No training/serving skew in the served list build: the candidate list the API caches is ranked exactly as
``Pipeline.run`` (offline evaluation, batch, training lists) ranks it — same stages, same hydrated features
reaching the learned ranker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from belong import surfaces
from belong.domain import Surface
from belong.pipeline.types import Request
from belong.serve.engine import Engine
from belong.serve.feature_reader import FeatureReader
from belong.serve.metrics import Metrics
from belong.serve.settings import ServeSettings
from belong.serve.versions import ModelRegistry, build_version
from belong.toml_writer import dumps


@pytest.fixture(scope="module")
def ranked_model(small_store: Path, tmp_path_factory: pytest.TempPathFactory):
    shipped = surfaces.load("communities_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 40, "min_data_in_leaf": 20})
    path = tmp_path_factory.mktemp("skew") / "ranked_small.toml"
    path.write_text(dumps(shipped), encoding="utf-8")
    return build_version(str(small_store), {Surface.COMMUNITIES: path})


def test_served_answers_rank_as_the_offline_pipeline(ranked_model) -> None:
    """The engine (cache miss, then a cache hit of the packed list with memoised rules) answers exactly what the
    offline pipeline does, scores included."""
    pipeline = ranked_model.pipelines[Surface.COMMUNITIES]
    state = ranked_model.state
    registry = ModelRegistry()
    registry.add(ranked_model, activate=True)
    engine = Engine(registry, FeatureReader.open(None, prefix="skew:", budget_ms=50, breaker_s=1), Metrics(),
                    ServeSettings().with_(budget_sources_ms=60_000))
    with_friends = 0
    for u in state.users.ids[:60]:
        offline = pipeline.run(Request(u, Surface.COMMUNITIES, k=10))
        for _ in ("miss", "hit"):
            served = orjson.loads(asyncio.run(engine.recommend(Surface.COMMUNITIES, u, 10)))["items"]
            assert [it["id"] for it in served] == [it.id for it in offline.items]
            assert [it["score"] for it in served] == pytest.approx([round(it.score, 6) for it in offline.items])
        with_friends += any(it.features.get("friends_in", 0) > 0 for it in offline.items)
    assert with_friends > 0  # the social feature the ranker reads was there when it scored
