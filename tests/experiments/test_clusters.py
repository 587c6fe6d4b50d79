"""Friend-graph clusters: Leiden finds planted groups, ego clusters cover every user, the cut share is counted by
hand, and ``belong experiment cluster`` saves them with the experiment."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from belong.experiments.clusters import cut_share, ego, leiden


def _graph(edges: list[tuple[int, int]], n: int) -> sp.csr_matrix:
    r = [a for a, b in edges] + [b for a, b in edges]
    c = [b for a, b in edges] + [a for a, b in edges]
    return sp.csr_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))


def _cliques() -> sp.csr_matrix:
    """Three 6-cliques joined by one edge each (two bridges)."""
    edges = []
    for g in range(3):
        nodes = range(6 * g, 6 * g + 6)
        edges += [(a, b) for a in nodes for b in nodes if a < b]
    edges += [(5, 6), (11, 12)]
    return _graph(edges, 18)


def test_leiden_recovers_planted_groups_and_cut_share_is_counted() -> None:
    adj = _cliques()
    labels = leiden(adj, seed=0)
    assert len(set(labels.tolist())) == 3
    for g in range(3):
        assert len(set(labels[6 * g:6 * g + 6].tolist())) == 1
    assert cut_share(adj, labels) == 2 / (3 * 15 + 2)  # the two bridges of 47 friendships
    assert cut_share(adj, np.zeros(18, dtype=np.int64)) == 0.0


def test_ego_clusters_cover_every_node() -> None:
    adj = _graph([(0, 1), (0, 2), (0, 3), (4, 5)], 7)
    labels = ego(adj)
    assert (labels >= 0).all()
    assert labels[0] == labels[1] == labels[2] == labels[3] and labels[4] == labels[5] and labels[6] != labels[4]
    assert cut_share(adj, labels) == 0.0


def test_cli_cluster_saves_clusters_with_the_experiment(tmp_path, monkeypatch, capsys) -> None:
    import json

    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.experiments.declaration import parse
    from belong.experiments.store import open_experiments
    from belong.simulate import simulate
    from cli_runner import run_cli
    from experiment_helpers import declaration

    store = tmp_path / "store"
    with open_store(store) as st:
        for part in simulate(200, 20, seed=2):
            write_world(st, part, progress=False)
    with open_experiments(store) as ex:
        ex.create(parse(declaration(unit="cluster")))
    code, out, err = run_cli(monkeypatch, capsys, "experiment", "cluster", "explore_more", "--store", str(store))
    assert code == 0, err
    report = json.loads(out)
    assert report["method"] == "leiden" and report["users"] == 200 and 0.0 <= report["cut_share"] < 1.0
    with open_experiments(store) as ex:
        clusters = ex.clusters("explore_more")
        exp = ex.get("explore_more")
    assert len(clusters) == 200 and len(set(clusters.values())) == report["clusters"]
    assert exp.meta["clustering"] == report and exp.version == 2
