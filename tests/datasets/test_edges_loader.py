"""Edge-list loader: header detection, undirected de-duplication, counts from SOURCE.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.datasets import load_world
from belong.errors import DatasetError


@pytest.mark.data
@pytest.mark.parametrize(
    ("path", "nodes", "edges"),
    [("lastfm-asia/lastfm_asia_edges.csv", 7_624, 27_806), ("twitch-musae/DE/DE_edges.csv", 9_498, 153_138)],
)
def test_real_graphs(data_dir: Path, path: str, nodes: int, edges: int) -> None:
    world = load_world(f"edges:{path}", data_dir)
    assert world.users.num_rows == nodes
    assert world.meta["counts"]["friendships"] == edges == world.events.num_rows
    ev = world.events.to_pandas()
    assert (ev["actor"].astype(int) < ev["target"].astype(int)).all()
    assert not ev.duplicated(["actor", "target"]).any()


def test_dedup_self_loops_and_numeric_order(tmp_path: Path) -> None:
    f = tmp_path / "g.csv"
    f.write_text("from,to,weight\n10,9,1\n9,10,1\n9,10,2\n3,3,1\n2,100,1\n")
    world = load_world(f"edges:{f}")
    pairs = list(zip(world.events.column("actor").to_pylist(), world.events.column("target").to_pylist(),
                     strict=True))
    assert pairs == [("2", "100"), ("9", "10")]  # ids compare as integers: "9" < "10", "2" < "100"
    assert world.meta["counts"] == {"users": 5, "friendships": 2, "events": 2, "self_loops": 1,
                                    "duplicate_edges": 2}
    assert set(world.events.column("type").to_pylist()) == {"friend_accept"}


def test_no_header_tabs_and_string_ids(tmp_path: Path) -> None:
    f = tmp_path / "names.tsv"
    f.write_text("bob\talice\nalice\tbob\ncarol\tbob\n")
    world = load_world(f"edges:{f}")
    assert world.users.column("id").to_pylist() == ["alice", "bob", "carol"]
    assert world.events.column("actor").to_pylist() == ["alice", "bob"]
    g = tmp_path / "plain.csv"
    g.write_text("1,2\n2,3\n")
    assert load_world(f"edges:{g}").meta["counts"]["friendships"] == 2  # first line is data, not a header


def test_reload_is_identical(tmp_path: Path) -> None:
    f = tmp_path / "g.csv"
    f.write_text("a,b\n1,2\n2,3\n")
    assert load_world(f"edges:{f}").events.equals(load_world(f"edges:{f}").events)


def test_source_md_counts(tmp_path: Path, source_md) -> None:
    folder = tmp_path / "graph"
    folder.mkdir()
    (folder / "x_edges.csv").write_text("node_1,node_2\n0,1\n1,2\n")
    source_md(folder, [("nodes", "3"), ("edges", "2")])
    assert load_world("edges:graph/x_edges.csv", tmp_path).meta["counts"]["friendships"] == 2
    source_md(folder, [("nodes", "3"), ("edges", "27,806")])
    with pytest.raises(DatasetError, match=r"found 2 undirected edges, SOURCE.md states 27,806"):
        load_world("edges:graph/x_edges.csv", tmp_path)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="file 'nope.csv' not found"):
        load_world("edges:nope.csv", tmp_path)
    one = tmp_path / "one.csv"
    one.write_text("1\n2\n")
    with pytest.raises(DatasetError, match="expected two columns"):
        load_world(f"edges:{one}")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        load_world(f"edges:{empty}")
    with pytest.raises(DatasetError, match="unknown spec"):
        load_world("movielens-1b")
