"""The router on a real model version: cluster units, arm pipelines built once per version, refresh after stop."""

from __future__ import annotations

import asyncio

import pytest

from belong.domain import Surface
from belong.experiments.declaration import parse
from belong.experiments.serving import Router
from belong.experiments.store import open_experiments
from experiment_helpers import declaration


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.serve.versions import build_version
    from belong.simulate import simulate

    path = tmp_path_factory.mktemp("router-store")
    with open_store(path) as st:
        for part in simulate(200, 20, seed=6):
            write_world(st, part, progress=False)
    return path, build_version(path)


def test_cluster_experiment_routes_whole_clusters(world) -> None:
    store, model = world
    users = model.state.users.ids
    with open_experiments(store) as ex:
        ex.create(parse(declaration(name="by_cluster", unit="cluster")))
        ex.save_clusters("by_cluster", {u: f"c{i % 7}" for i, u in enumerate(users)}, {"method": "test"})
    router = Router(str(store), flush_s=60).open()
    try:
        assert router.active

        async def arms() -> dict[str, tuple[str, str, object]]:
            out = {}
            for u in users:
                r = await router.route(model, Surface.COMMUNITIES, u)
                assert r is not None
                out[u] = (r.unit, r.arm, r.pipeline)
            return out

        got = asyncio.run(arms())
        by_cluster: dict[str, set[str]] = {}
        for unit, arm, _ in got.values():
            by_cluster.setdefault(unit, set()).add(arm)
        assert len(by_cluster) == 7 and all(len(a) == 1 for a in by_cluster.values())
        treated = {p for _, arm, p in got.values() if arm == "treatment"}
        control = {p for _, arm, p in got.values() if arm == "control"}
        assert control == {model.pipelines[Surface.COMMUNITIES]}  # the plain arm is the version's own pipeline
        assert len(treated) == 1 and treated != control  # built once, shared by every treated user
        assert asyncio.run(router.route(model, Surface.PEOPLE, users[0])) is None  # another surface
        with open_experiments(store) as ex:
            ex.stop("by_cluster")
        router.refresh()
        assert not router.active
    finally:
        router.close()
