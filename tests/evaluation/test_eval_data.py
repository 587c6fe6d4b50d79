"""Interactions from worlds and stores: user x item joins, the square friendship graph, age groups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from belong.datasets import World
from belong.domain import AgeGroup, Event, EventType, TargetKind, User
from belong.errors import ValidationError
from belong.evaluation.data import interactions_from_world, load_interactions
from belong.eventlog import open_store
from belong.schema import events_to_table, users_to_table


def ev(i: int, etype: str, actor: str, target: str, ts: int, value: float = 1.0) -> Event:
    kind = TargetKind.USER if etype.startswith("friend") else TargetKind.COMMUNITY
    return Event(event_id=f"e{i}", ts_us=ts, type=EventType(etype), actor=actor, target=target, target_kind=kind,
                 value=value)


EVENTS = [
    ev(0, "join", "alice", "chess", 10, 2.0), ev(1, "join", "bob", "chess", 20), ev(2, "join", "bob", "go", 30),
    ev(3, "message", "alice", "go", 40, 5.0), ev(4, "friend_accept", "alice", "bob", 50),
    ev(5, "friend_accept", "carol", "bob", 60), ev(6, "friend_remove", "bob", "carol", 70),
    ev(7, "friend_accept", "dave", "alice", 80),
]
USERS = [User(id="alice", created_at_us=0, age_group=AgeGroup.TEEN), User(id="bob", created_at_us=0)]


def world() -> World:
    return World(users=users_to_table(USERS), events=events_to_table(EVENTS), meta={"name": "tiny"})


def test_join_events_become_user_item_rows() -> None:
    data = interactions_from_world(world())
    assert data.user_ids.tolist() == ["alice", "bob"] and data.item_ids.tolist() == ["chess", "go"]
    assert sorted(zip(data.users.tolist(), data.items.tolist(), strict=True)) == [(0, 0), (1, 0), (1, 1)]
    assert data.weights.tolist() == [2.0, 1.0, 1.0] and data.ts_us.tolist() == [10, 20, 30]
    assert data.meta["dataset"] == "tiny" and not data.meta["square"]
    assert data.meta["user_age_group"].tolist() == ["teen", "unknown"]


def test_other_event_types_on_request() -> None:
    data = interactions_from_world(world(), ["join", "message"])
    assert len(data) == 4
    with pytest.raises(ValidationError, match="has no view events"):
        interactions_from_world(world(), ["view"])


def test_friendships_become_a_square_graph_with_removals_applied() -> None:
    data = interactions_from_world(world(), ["friend_accept"])
    assert data.meta["square"] and data.user_ids is data.item_ids
    ids = data.user_ids
    pairs = {(ids[u], ids[v]) for u, v in zip(data.users, data.items, strict=True)}
    # carol-bob was removed later; the others are kept in both directions
    assert pairs == {("alice", "bob"), ("bob", "alice"), ("alice", "dave"), ("dave", "alice")}
    assert sorted(data.ts_us.tolist()) == [50, 50, 80, 80]


def test_graph_is_the_default_when_there_are_no_joins() -> None:
    only_friends = World(events=events_to_table([e for e in EVENTS if e.type.value.startswith("friend")]))
    assert interactions_from_world(only_friends).meta["square"]


def test_store_spec_reads_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store"
    with open_store(path) as store:
        store.upsert_users(USERS)
        store.append(EVENTS)
    data = load_interactions(str(path))
    assert len(data) == 3 and data.meta["user_age_group"].tolist() == ["teen", "unknown"]
    assert data.meta["dataset"] == str(path)


@pytest.mark.postgres
def test_postgres_store_spec(postgres_schema_url: str) -> None:
    with open_store(postgres_schema_url) as store:
        store.upsert_users(USERS)
        store.append(EVENTS)
    data = load_interactions(postgres_schema_url)
    assert sorted(zip(data.users.tolist(), data.items.tolist(), strict=True)) == [(0, 0), (1, 0), (1, 1)]


def test_empty_spec_is_rejected() -> None:
    with pytest.raises(ValidationError, match="dataset"):
        load_interactions("  ")


def test_numpy_types() -> None:
    data = interactions_from_world(world())
    assert data.users.dtype == np.int32 and data.ts_us.dtype == np.int64
