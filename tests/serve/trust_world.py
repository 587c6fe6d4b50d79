"""A small simulated world with every case the safety policy must handle made common: blocks between people who
share communities (so similar-people lists would show them), teens, age-restricted, invite-only, undiscoverable and
banned communities, a banned user. Used by the trust tests (``test_trust*.py``) through an in-process app."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serve_helpers import ADMIN_KEY, WRITE_KEY

RESTRICTED, INVITE_ONLY, HIDDEN, BANNED_C = ("c1", "c7"), ("c2", "c8"), ("c3",), ("c9",)
BANNED_USER = "u5"


def _edit(table: pa.Table, fn) -> pa.Table:
    rows = table.to_pylist()
    for r in rows:
        fn(r)
    return pa.Table.from_pylist(rows, schema=table.schema)


def build_store(path: Path, n_users: int = 300, n_communities: int = 30, seed: int = 5) -> Path:
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate_world

    world = simulate_world(n_users, n_communities, seed=seed)

    def community(r: dict) -> None:
        r["is_age_restricted"] = r["id"] in RESTRICTED or r["is_age_restricted"]
        r["invite_only"] = r["id"] in INVITE_ONLY or r["invite_only"]
        r["discoverable"] = r["id"] not in HIDDEN and r["discoverable"]
        r["status"] = "banned" if r["id"] in BANNED_C else r["status"]

    def user(r: dict) -> None:
        r["status"] = "banned" if r["id"] == BANNED_USER else r["status"]
        if int(r["id"][1:]) % 5 == 0:  # many teens
            r["age_group"] = "teen"

    world.communities = _edit(world.communities, community)
    world.users = _edit(world.users, user)
    ev = world.events
    joins = ev.filter(pc.equal(ev.column("type"), "join"))
    by_comm: dict[str, list[str]] = {}
    for a, t in zip(joins.column("actor").to_pylist(), joins.column("target").to_pylist(), strict=True):
        by_comm.setdefault(t, []).append(a)
    rng = np.random.default_rng(seed)
    last = int(np.max(np.asarray(ev.column("ts_us"))))
    blocks = []
    for c, members in sorted(by_comm.items()):  # co-members block each other: each would be the other's neighbour
        members = sorted(set(members))
        for i in range(min(4, len(members) // 2)):
            a, b = rng.choice(len(members), 2, replace=False)
            blocks.append({"event_id": f"blk-{c}-{i}", "ts_us": last + len(blocks) + 1, "type": "block",
                           "actor": members[a], "target": members[b], "target_kind": "user", "value": 1.0})
    world.events = pa.concat_tables([ev, pa.Table.from_pylist(blocks, schema=ev.schema)])
    with open_store(path) as st:
        write_world(st, world, progress=False)
    return path


def settings(**over):
    from belong.serve.settings import ServeSettings

    over.setdefault("read_auth", False)  # reads open here: what an answer carries; read keys: test_access.py
    return ServeSettings(write_keys=frozenset({WRITE_KEY}), admin_keys=frozenset({ADMIN_KEY}), **over)
