"""No training/serving skew in the served list build: the candidate list the API caches is ranked exactly as
``Pipeline.run`` (offline evaluation, batch, training lists) ranks it — same stages, same hydrated features
reaching the learned ranker."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.domain import Surface
from belong.pipeline.types import Request
from belong.ranking.scorer import surface_pipeline
from belong.serve.engine import run_sources
from belong.serve.models import build_version
from belong.toml_writer import dumps


@pytest.fixture(scope="module")
def ranked_model(small_store: Path, tmp_path_factory: pytest.TempPathFactory):
    shipped = surface_pipeline("communities_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 40, "min_data_in_leaf": 20})
    path = tmp_path_factory.mktemp("skew") / "ranked_small.toml"
    path.write_text(dumps(shipped), encoding="utf-8")
    return build_version(str(small_store), {Surface.COMMUNITIES: path})


def test_served_list_build_ranks_as_the_offline_pipeline(ranked_model) -> None:
    pipeline = ranked_model.pipelines[Surface.COMMUNITIES]
    state = ranked_model.state
    with_friends = 0
    for u in state.users.ids[:60]:
        offline = pipeline.run(Request(u, Surface.COMMUNITIES, k=10))
        served, _ = run_sources(pipeline, ranked_model, Request(u, Surface.COMMUNITIES, k=10), depth=10)
        assert [pipeline.item_id(m.item) for m, _ in served] == [it.id for it in offline.items]
        assert [s for _, s in served] == pytest.approx([it.score for it in offline.items], rel=1e-9, abs=1e-12)
        with_friends += any(m.features.get("friends_in", 0) > 0 for m, _ in served)
    assert with_friends > 0  # the social feature the ranker reads was there when it scored
