"""MovieLens-100K loader: exact counts on the real data, the mapping on a tiny fake copy, clear failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from belong.datasets import load_world
from belong.datasets.tables import ts_us
from belong.errors import DatasetError

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
          "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]


def _item(item_id: int, title: str, release: str, genres: set[str]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in GENRES)
    return f"{item_id}|{title}|{release}||http://imdb|{flags}"


@pytest.fixture()
def fake_ml(tmp_path: Path, source_md) -> Path:
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|17|F|student|94043\n3|18|M|writer|32067\n")
    items = [_item(1, "Toy Story (1995)", "01-Jan-1995", {"Animation", "Comedy"}),
             _item(2, "Metropolis (1927)", "01-Jan-1927", {"Sci-Fi"}),
             _item(3, "unknown", "", {"unknown"})]
    (folder / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    (folder / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in enumerate(GENRES)) + "\n")
    (folder / "u.data").write_text("1\t1\t5\t881250949\n2\t1\t3\t891717742\n2\t3\t1\t878887116\n3\t2\t4\t880000000\n")
    source_md(folder, [("ratings (u.data)", "4"), ("users", "3"), ("items", "3")])
    return tmp_path


@pytest.mark.data
def test_real_ml100k_counts(data_dir: Path) -> None:
    world = load_world("ml-100k", data_dir)
    assert world.meta["counts"] == {"users": 943, "communities": 1_682, "events": 100_000}
    assert world.users.num_rows == 943 and world.communities.num_rows == 1_682
    ev = world.events.to_pandas()
    assert set(ev["type"]) == {"join"} and set(ev["value"]) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert ev["event_id"].is_unique
    users = world.users.to_pandas()
    ages = {line.split("|")[0]: int(line.split("|")[1])
            for line in (data_dir / "ml-100k" / "u.user").read_text(encoding="latin-1").splitlines()}
    expected = users["id"].map(lambda u: "teen" if ages[u] < 18 else "adult")
    assert (users["age_group"] == expected).all() and (users["age_group"] == "teen").any()


def test_fake_ml100k_mapping(fake_ml: Path) -> None:
    world = load_world("ml-100k", fake_ml)
    users = {r["id"]: r for r in world.users.to_pylist()}
    assert [users[u]["age_group"] for u in "123"] == ["adult", "teen", "adult"]
    assert users["2"]["created_at_us"] == 878887116 * 1_000_000  # first rating
    assert {u["locale"] for u in users.values()} == {"en-US"}
    comms = {r["id"]: r for r in world.communities.to_pylist()}
    assert comms["1"]["name"] == "Toy Story (1995)"
    assert comms["1"]["tags"] == ["animation", "comedy"]
    assert comms["1"]["created_at_us"] == ts_us(1995, 1, 1)
    assert comms["2"]["created_at_us"] == 0  # 1927 is before the data model's earliest timestamp: clamped
    assert comms["3"]["created_at_us"] == ts_us(1995, 1, 1) and comms["3"]["tags"] == []  # no date, "unknown"
    ev = world.events.to_pylist()
    assert [(e["actor"], e["target"], e["value"], e["ts_us"]) for e in ev][0] == ("1", "1", 5.0, 881250949_000_000)
    assert [e["event_id"] for e in ev] == [f"ml-100k:join:{i}" for i in range(4)]


def test_wrong_rating_count(fake_ml: Path, source_md) -> None:
    source_md(fake_ml / "ml-100k", [("ratings (u.data)", "100,000"), ("users", "3"), ("items", "3")])
    with pytest.raises(DatasetError, match=r"found 4 ratings, SOURCE.md states 100,000"):
        load_world("ml-100k", fake_ml)


def test_rating_of_unknown_item(fake_ml: Path) -> None:
    (fake_ml / "ml-100k" / "SOURCE.md").unlink()
    with (fake_ml / "ml-100k" / "u.data").open("a") as f:
        f.write("1\t77\t3\t881250949\n")
    with pytest.raises(DatasetError, match=r"u.data line 5: item 77 is not in u.item"):
        load_world("ml-100k", fake_ml)


def test_short_line(fake_ml: Path) -> None:
    (fake_ml / "ml-100k" / "SOURCE.md").unlink()
    with (fake_ml / "ml-100k" / "u.data").open("a") as f:
        f.write("1\t2\n")
    with pytest.raises(DatasetError, match=r"u.data line 5: expected 4 fields separated by .\\t., got 2"):
        load_world("ml-100k", fake_ml)
