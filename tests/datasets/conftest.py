"""Small fake dataset folders (same formats as the public ones) with SOURCE.md tables, built in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_source(folder: Path, stats: list[tuple[str, str]], files: list[str] | None = None) -> None:
    """A SOURCE.md with a statistics table (label, stated value) and a Files table with each file's real lines."""
    lines = ["# fake — SOURCE", "", "| quantity | official | measured |", "|---|---:|---:|"]
    lines += [f"| {label} | {value} | {value} |" for label, value in stats]
    lines += ["", "## Files", "| file | bytes | lines | sha256 |", "|---|---:|---:|---|"]
    for name in files if files is not None else sorted(p.name for p in folder.iterdir() if p.is_file()):
        data = (folder / name).read_bytes()
        n_lines = data.count(b"\n")
        lines.append(f"| `{name}` | {len(data):,} | {n_lines:,} | `0` |")
    (folder / "SOURCE.md").write_text("\n".join(lines) + "\n")


HETREC_FILES = {
    "artists.dat": "id\tname\turl\tpictureURL\n1\tBand One\thttp://a\thttp://p\n2\tBand Two\thttp://b\thttp://p\n"
    "3\tBand \"Three\"\thttp://c\thttp://p\n",
    "tags.dat": "tagID\ttagValue\n1\tRock\n2\tjazz\n3\tb\xe9bop\n",
    "user_artists.dat": "userID\tartistID\tweight\n2\t1\t100\n2\t2\t50\n3\t1\t7\n4\t3\t1\n",
    "user_friends.dat": "userID\tfriendID\n2\t3\n3\t2\n2\t10\n10\t2\n",
    # user 2 tagged artist 1 in March 2009 and artist 2 in 2008; user 3 only artist 2 (so falls back to 2010-01)
    "user_taggedartists.dat": "userID\tartistID\ttagID\tday\tmonth\tyear\n2\t1\t1\t1\t3\t2009\n"
    "2\t1\t2\t1\t5\t2009\n2\t2\t1\t1\t6\t2008\n3\t2\t3\t1\t1\t2010\n3\t2\t1\t1\t1\t1956\n",
}
HETREC_STATS = [("users", "4"), ("artists (artists.dat rows)", "3"), ("user–artist relations (x)", "4"),
                ("friend relations", "2 bi-directional = 4 rows"), ("tags (tags.dat)", "3"),
                ("tag assignments (x)", "5")]


@pytest.fixture()
def source_md():
    """``write_source(folder, stats, files=None)``: write a SOURCE.md into a fake dataset folder."""
    return write_source


@pytest.fixture()
def hetrec_stats() -> list[tuple[str, str]]:
    return list(HETREC_STATS)


@pytest.fixture()
def fake_hetrec(tmp_path: Path) -> Path:
    """A data dir holding a tiny ``hetrec2011-lastfm-2k`` folder whose SOURCE.md states its true counts."""
    folder = tmp_path / "hetrec2011-lastfm-2k"
    folder.mkdir()
    for name, text in HETREC_FILES.items():
        (folder / name).write_text(text, encoding="latin-1" if name == "tags.dat" else "utf-8")
    write_source(folder, HETREC_STATS)
    return tmp_path
