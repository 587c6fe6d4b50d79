"""LightGCN-format splits (``lightgcn:DIR``): ``train.txt`` / ``test.txt``, one line ``user item item ...`` each.

Users and items keep their ids (items become communities). The split that comes with the data is kept as time:
every train pair is a ``join`` at 2020-01-01 plus its position in the user's line in seconds, every test pair a
``join`` at ``meta["given_split_ts_us"]`` (2020-06-01) plus its position, so a temporal cut at
``given_split_ts_us`` reproduces the given split exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from belong.datasets.source import check_file, expect_count, find_source, resolve_user_path
from belong.datasets.tables import community_table, event_table, seq_ids, str_ids, ts_us, user_table
from belong.datasets.world import World
from belong.errors import DatasetError

TRAIN_TS_US = ts_us(2020, 1, 1)
SPLIT_TS_US = ts_us(2020, 6, 1)
_US_PER_S = 1_000_000


def read_lightgcn_file(path: Path, dataset: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, position-in-line) int64 arrays, one entry per pair, and the users of all lines."""
    users, items, lines = [], [], []
    text = path.read_text(encoding="utf-8", errors="replace")
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            nums = np.array(fields, dtype=np.int64)
        except ValueError:
            bad = next(f for f in fields if not f.lstrip("-").isdigit())
            raise DatasetError(f"{dataset}: {path.name} line {lineno}: {bad!r} is not an integer id") from None
        users.append(nums[0])
        items.append(nums[1:])
        lines.append(len(nums) - 1)
    counts = np.asarray(lines, dtype=np.int64)
    flat_items = np.concatenate(items) if items else np.empty(0, np.int64)
    flat_users = np.repeat(np.asarray(users, dtype=np.int64), counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(len(flat_items), dtype=np.int64) - starts
    return flat_users, flat_items, position, np.asarray(users, dtype=np.int64)


def load_lightgcn(raw_dir: str, data_dir: Path | None = None) -> World:
    folder = resolve_user_path(raw_dir, data_dir, want_dir=True)
    name = folder.resolve().name
    source = find_source(folder, levels=1)
    parts = {}
    for split in ("train", "test"):
        path = folder / f"{split}.txt"
        check_file(path, source, name)
        parts[split] = read_lightgcn_file(path, name)
        if source is not None:
            _, items, _, line_users = parts[split]
            # SOURCE.md row: file | users (lines) | interactions | distinct items | id ranges
            expect_count(name, f"{split} interactions", len(items), source.stated(f"{split}.txt", 2))
            expect_count(name, f"{split} distinct items", len(np.unique(items)), source.stated(f"{split}.txt", 3))
            expect_count(name, f"{split} users", len(np.unique(line_users)), source.stated(f"{split}.txt", 1))

    all_users = np.unique(np.concatenate([parts["train"][3], parts["test"][3]]))
    all_items = np.unique(np.concatenate([parts["train"][1], parts["test"][1]]))
    users = user_table(name, id=str_ids(all_users), created_at_us=TRAIN_TS_US)
    communities = community_table(name, id=str_ids(all_items), name=str_ids(all_items, "item "),
                                  created_at_us=TRAIN_TS_US)
    tables = []
    for split, base in (("train", TRAIN_TS_US), ("test", SPLIT_TS_US)):
        u, i, pos, _ = parts[split]
        tables.append(event_table(
            name, event_id=seq_ids(f"{name}:join:{split}:", len(u)), ts_us=base + pos * _US_PER_S, type="join",
            actor=str_ids(u), target=str_ids(i), target_kind="community",
        ))
    max_train = int(TRAIN_TS_US + parts["train"][2].max(initial=0) * _US_PER_S)
    if max_train >= SPLIT_TS_US:
        raise DatasetError(f"{name}: a train line is too long to keep every train event before the split")
    counts = {
        "users": users.num_rows, "communities": communities.num_rows,
        "events": tables[0].num_rows + tables[1].num_rows,
        "train_rows": tables[0].num_rows, "test_rows": tables[1].num_rows,
    }
    meta = {"name": name, "source": str(folder), "counts": counts, "given_split_ts_us": SPLIT_TS_US,
            "train_rows": tables[0].num_rows, "test_rows": tables[1].num_rows}
    return World(users=users, communities=communities, events=pa.concat_tables(tables), meta=meta)
