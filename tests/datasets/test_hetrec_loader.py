"""HetRec Last.fm loader: exact counts on the real data, the mapping on a tiny fake copy, clear failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from belong.datasets import load_world
from belong.datasets.tables import ts_us
from belong.errors import DatasetError
from belong.schema import validate_entity_table, validate_event_table


@pytest.mark.data
def test_real_hetrec_counts(data_dir: Path) -> None:
    world = load_world("hetrec-lastfm", data_dir)
    counts = world.meta["counts"]
    assert counts["users"] == 1_892
    assert counts["communities"] == 17_632
    assert counts["engagement_events"] == 92_834
    assert counts["friendships"] == 12_717
    assert counts["tag_assignments"] == 186_479
    assert world.events.num_rows == 92_834 + 12_717
    validate_event_table(world.events)
    validate_entity_table("communities", world.communities)
    ev = world.events.to_pandas()
    assert ev["event_id"].is_unique
    friends = ev[ev["type"] == "friend_accept"]
    assert (friends["actor"].astype(int) < friends["target"].astype(int)).all()
    joins = ev[ev["type"] == "join"]
    assert joins["value"].sum() == pytest.approx(
        np.loadtxt(data_dir / "hetrec2011-lastfm-2k" / "user_artists.dat", skiprows=1, usecols=2).sum()
    )
    assert (ev["ts_us"] >= ts_us(2002, 1, 1)).all()
    tags = world.communities.column("tags").to_pylist()
    assert max(len(t) for t in tags) == 10
    # SOURCE.md: 12,523 artists are tagged; 390 of them are not in artists.dat (checked with awk), so 12,133
    # communities have tags
    assert sum(1 for t in tags if t) == 12_133


def test_fake_hetrec_mapping(fake_hetrec: Path) -> None:
    world = load_world("hetrec-lastfm", fake_hetrec)
    assert world.meta["counts"] == {"users": 4, "communities": 3, "engagement_events": 4, "friendships": 2,
                                    "events": 6, "tag_assignments": 5}
    ev = {(r["type"], r["actor"], r["target"]): r for r in world.events.to_pylist()}
    assert ev[("join", "2", "1")]["ts_us"] == ts_us(2009, 3, 1)  # earliest tag of this artist by this user
    assert ev[("join", "2", "1")]["value"] == 100.0  # join value = listening weight
    assert ev[("join", "2", "2")]["ts_us"] == ts_us(2008, 6, 1)
    assert ev[("join", "3", "1")]["ts_us"] == ts_us(2010, 1, 1)  # user's earliest valid tag (1956 ignored)
    assert ev[("join", "4", "3")]["ts_us"] == ts_us(2011, 5, 1)  # no tags at all: dataset release
    assert ev[("friend_accept", "2", "3")]["ts_us"] == ts_us(2010, 1, 1)  # later of the two users' first activity
    assert ("friend_accept", "2", "10") in ev and ("friend_accept", "10", "2") not in ev  # once, actor = smaller
    comms = {r["id"]: r for r in world.communities.to_pylist()}
    assert comms["1"]["tags"] == ["rock", "jazz"]
    assert comms["2"]["tags"] == ["rock", "bébop"]  # most used first; tags.dat is latin-1
    assert comms["2"]["created_at_us"] == ts_us(2008, 6, 1)
    assert comms["3"] == {**comms["3"], "name": 'Band "Three"', "tags": [], "created_at_us": ts_us(2005, 1, 1)}
    users = {r["id"]: r for r in world.users.to_pylist()}
    assert users["2"]["created_at_us"] == ts_us(2008, 6, 1)
    assert users["10"]["created_at_us"] == ts_us(2011, 5, 1)
    assert {u["age_group"] for u in users.values()} == {"unknown"}


def test_reload_gives_identical_event_ids(fake_hetrec: Path) -> None:
    a = load_world("hetrec-lastfm", fake_hetrec).events
    b = load_world("hetrec-lastfm", fake_hetrec).events
    assert a.equals(b)


def test_wrong_count_in_source_md(fake_hetrec: Path, source_md, hetrec_stats) -> None:
    folder = fake_hetrec / "hetrec2011-lastfm-2k"
    source_md(folder, [("friend relations", "3 bi-directional") if k == "friend relations" else (k, v)
                       for k, v in hetrec_stats])
    with pytest.raises(DatasetError, match=r"found 2 undirected friendships, SOURCE.md states 3"):
        load_world("hetrec-lastfm", fake_hetrec)


def test_truncated_file_fails_on_line_count(fake_hetrec: Path) -> None:
    path = fake_hetrec / "hetrec2011-lastfm-2k" / "user_artists.dat"
    path.write_text(path.read_text().rsplit("\n", 2)[0] + "\n")
    with pytest.raises(DatasetError, match=r"user_artists.dat has 4 lines but .*states 5"):
        load_world("hetrec-lastfm", fake_hetrec)


def test_missing_file_and_folder(fake_hetrec: Path, tmp_path: Path) -> None:
    (fake_hetrec / "hetrec2011-lastfm-2k" / "tags.dat").unlink()
    with pytest.raises(DatasetError, match="missing file .*tags.dat"):
        load_world("hetrec-lastfm", fake_hetrec)
    with pytest.raises(DatasetError, match="dataset folder 'hetrec2011-lastfm-2k' not found"):
        load_world("hetrec-lastfm", tmp_path / "elsewhere")


def test_malformed_line_names_file_and_line(fake_hetrec: Path) -> None:
    folder = fake_hetrec / "hetrec2011-lastfm-2k"
    (folder / "SOURCE.md").unlink()  # user-edited copy: no counts to check, but the format still is
    path = folder / "user_artists.dat"
    path.write_text(path.read_text().replace("3\t1\t7", "3\t1\tseven"))
    with pytest.raises(DatasetError, match=r"user_artists.dat line 4: column 'weight' must be an integer"):
        load_world("hetrec-lastfm", fake_hetrec)


def test_unknown_artist_is_rejected(fake_hetrec: Path) -> None:
    folder = fake_hetrec / "hetrec2011-lastfm-2k"
    (folder / "SOURCE.md").unlink()
    path = folder / "user_artists.dat"
    path.write_text(path.read_text() + "4\t99\t1\n")
    with pytest.raises(DatasetError, match="artist 99 is not in artists.dat"):
        load_world("hetrec-lastfm", fake_hetrec)
