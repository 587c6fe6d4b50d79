"""Friendship graphs from an edge list (``edges:FILE.csv``), e.g. the Twitch (MUSAE) and LastFM-Asia graphs.

The first two columns are the endpoints; a header line is detected (a first line whose fields are not ids while
the next line's are, or known column names). Edges are undirected: each pair is kept once as a
``friend_accept`` event (actor = smaller id, target = larger; ids compare as integers when all are integers),
all at 2020-01-01. Self-loops and repeated pairs are dropped and counted in ``meta``. Users are the node ids
that appear in an edge.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from belong.datasets.source import check_file, expect_count, find_source, resolve_user_path
from belong.datasets.tables import event_table, seq_ids, ts_us, user_table
from belong.datasets.world import World
from belong.errors import DatasetError

EDGE_TS_US = ts_us(2020, 1, 1)
_HEADER_NAMES = {"node_1", "node_2", "from", "to", "source", "target", "src", "dst", "x1", "x2", "u", "v",
                 "id_1", "id_2", "user", "friend", "a", "b"}
_INT = re.compile(r"^-?\d+$")


def _split(line: str, sep: str | None) -> list[str]:
    return [f.strip() for f in (line.split(sep) if sep else line.split())]


def _sniff(path: Path, dataset: str) -> tuple[str | None, bool]:
    """(separator, has_header) from the first two lines."""
    with path.open(encoding="utf-8", errors="replace") as f:
        first, second = f.readline().rstrip("\r\n"), f.readline().rstrip("\r\n")
    if not first.strip():
        raise DatasetError(f"{dataset}: {path.name} is empty")
    sep = "," if "," in first else "\t" if "\t" in first else None
    head = _split(first, sep)
    if len(head) < 2:
        raise DatasetError(f"{dataset}: {path.name} line 1: expected two columns (node, node), got {first[:60]!r}")
    nxt = _split(second, sep) if second.strip() else []
    first_ints = all(_INT.match(f) for f in head[:2])
    next_ints = len(nxt) >= 2 and all(_INT.match(f) for f in nxt[:2])
    has_header = (not first_ints and next_ints) or {h.lower() for h in head[:2]} <= _HEADER_NAMES
    return sep, has_header


def load_edges(raw_file: str, data_dir: Path | None = None) -> World:
    path = resolve_user_path(raw_file, data_dir, want_dir=False)
    stem = path.stem
    name = f"edges:{stem}"
    source = find_source(path, levels=2)
    check_file(path, source, name)
    sep, has_header = _sniff(path, name)
    try:
        df = pd.read_csv(path, sep=sep if sep else r"\s+", header=None, skiprows=1 if has_header else 0,
                         usecols=[0, 1], names=["a", "b"], dtype=str, keep_default_na=False, engine="c"
                         if sep else "python")
    except (pd.errors.ParserError, ValueError) as exc:
        raise DatasetError(f"{name}: cannot parse {path.name}: {str(exc).strip()}") from None
    a = df["a"].str.strip().to_numpy(dtype=object)
    b = df["b"].str.strip().to_numpy(dtype=object)
    empty = (a == "") | (b == "")
    if empty.any():
        i = int(empty.argmax())
        raise DatasetError(f"{name}: {path.name} line {i + 1 + has_header}: expected two node ids")
    numeric = bool(pd.Series(np.concatenate([a, b])).str.fullmatch(r"-?\d+").all())
    if numeric:
        ia, ib = a.astype(np.int64), b.astype(np.int64)
        lo, hi = np.minimum(ia, ib), np.maximum(ia, ib)
        nodes = np.unique(np.concatenate([ia, ib])).astype(str).astype(object)
    else:
        lo, hi = np.where(a <= b, a, b), np.where(a <= b, b, a)
        nodes = np.unique(np.concatenate([a, b]))
    loops = lo == hi
    pairs = pd.DataFrame({"lo": lo[~loops], "hi": hi[~loops]}).drop_duplicates().sort_values(["lo", "hi"])
    n_pairs = len(pairs)
    lo_s = pairs["lo"].astype(str).to_numpy(dtype=object)
    hi_s = pairs["hi"].astype(str).to_numpy(dtype=object)

    users = user_table(name, id=nodes, created_at_us=EDGE_TS_US)
    events = event_table(
        name, event_id=seq_ids(f"{name}:friend_accept:", n_pairs), ts_us=EDGE_TS_US, type="friend_accept",
        actor=lo_s, target=hi_s, target_kind="user",
    )
    counts = {"users": users.num_rows, "friendships": n_pairs, "events": n_pairs,
              "self_loops": int(loops.sum()), "duplicate_edges": int((~loops).sum()) - n_pairs}
    if source is not None:
        # twitch: one row per graph, "DE | nodes (SNAP) | edges (SNAP) | measured nodes in edges / ... | measured
        # edges"; SNAP's node count includes rows of the target file that no edge uses (FR: 6,551 vs 6,549).
        graph = stem.removesuffix("_edges")
        per_graph = source.stated(graph, 4) is not None
        stated_nodes = source.stated(graph, 3) if per_graph else source.stated("nodes")
        stated_edges = source.stated(graph, 4) if per_graph else source.stated("edges")
        expect_count(name, "nodes", counts["users"], stated_nodes)
        expect_count(name, "undirected edges", n_pairs, stated_edges)
    return World(users=users, events=events, meta={"name": name, "source": str(path), "counts": counts})
