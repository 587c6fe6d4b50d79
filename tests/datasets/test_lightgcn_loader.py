"""LightGCN-format loader: the given split survives as time (a cut at given_split_ts_us reproduces it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pytest

from belong.datasets import load_world
from belong.errors import DatasetError


def _pairs(path: Path) -> set[tuple[str, str]]:
    out = set()
    for line in path.read_text().splitlines():
        user, *items = line.split()
        out.update((user, i) for i in items)
    return out


def _cut(world, before: bool) -> set[tuple[str, str]]:
    split = world.meta["given_split_ts_us"]
    ts = world.events.column("ts_us")
    part = world.events.filter(pc.less(ts, split) if before else pc.greater_equal(ts, split))
    return set(zip(part.column("actor").to_pylist(), part.column("target").to_pylist(), strict=True))


@pytest.mark.data
def test_real_ml1m_lcfn_split(data_dir: Path) -> None:
    world = load_world("lightgcn:ml-1m-lcfn-split", data_dir)
    assert world.meta["train_rows"] == 796_244
    assert world.meta["test_rows"] == 99_455
    assert world.users.num_rows == 6_022
    assert world.communities.num_rows == 3_043
    folder = data_dir / "ml-1m-lcfn-split"
    assert _cut(world, before=True) == _pairs(folder / "train.txt")
    assert _cut(world, before=False) == _pairs(folder / "test.txt")


def test_fake_split_crlf_empty_user_and_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "train.txt").write_bytes(b"0 5 6 7\r\n1 5\r\n2\r\n")
    (folder / "test.txt").write_bytes(b"0 8\r\n1 6 7\r\n")
    monkeypatch.chdir(tmp_path.parent)  # "mini" is not under cwd: resolved against the data dir
    world = load_world("lightgcn:mini", tmp_path)
    assert world.meta["counts"] == {"users": 3, "communities": 4, "events": 7, "train_rows": 4, "test_rows": 3}
    assert _cut(world, before=True) == {("0", "5"), ("0", "6"), ("0", "7"), ("1", "5")}
    assert _cut(world, before=False) == {("0", "8"), ("1", "6"), ("1", "7")}
    ts = np.asarray(world.events.column("ts_us"))
    assert len(np.unique(ts[:3])) == 3  # the order within a line is kept as time
    assert world.events.column("event_id").to_pylist()[0] == "mini:join:train:0"


def test_malformed_token(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1 2\n1 x3\n")
    (tmp_path / "test.txt").write_text("0 3\n")
    with pytest.raises(DatasetError, match=r"train.txt line 2: 'x3' is not an integer id"):
        load_world(f"lightgcn:{tmp_path}")


def test_missing_test_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1 2\n")
    with pytest.raises(DatasetError, match="missing file .*test.txt"):
        load_world(f"lightgcn:{tmp_path}")
    with pytest.raises(DatasetError, match="folder 'no-such-dir' not found"):
        load_world("lightgcn:no-such-dir", tmp_path)


def test_count_stated_in_source_md(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1 2\n1 2\n")
    (tmp_path / "test.txt").write_text("0 3\n1 1\n")
    (tmp_path / "SOURCE.md").write_text(
        "| file | users (lines) | interactions | distinct items | id ranges |\n|---|---:|---:|---:|---|\n"
        "| train.txt | 2 | 3 | 2 | - |\n| test.txt | 2 | 5 | 2 | - |\n"
    )
    with pytest.raises(DatasetError, match=r"found 2 test interactions, SOURCE.md states 5"):
        load_world(f"lightgcn:{tmp_path}")
