"""friend_pagerank (exact truncated personalized PageRank) and popular_people (most connected, the fallback)."""

from __future__ import annotations

import numpy as np
import pytest

from belong.domain import Event, EventType, Surface, TargetKind
from belong.errors import ValidationError
from belong.pipeline import NewUser, Request
from belong.sources import people as people_sources
from belong.sources.people import FriendPageRank, PopularPeople
from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world


@pytest.fixture()
def state() -> WorldState:
    return from_world(toy_world())


def ppr_by_hand(state: WorldState, u: int, restart: float, steps: int) -> np.ndarray:
    """The same sum written as a loop of vector-matrix products over the dense transition matrix."""
    F = state.friend_csr().toarray().astype(np.float64)
    deg = F.sum(1)
    P = np.divide(F, deg[:, None], out=np.zeros_like(F), where=deg[:, None] > 0)
    x = np.zeros(state.n_users)
    x[u] = 1.0
    total = np.zeros_like(x)
    for _ in range(steps):
        x = (1 - restart) * (x @ P)
        total += restart * x
    return total


def test_friend_pagerank_is_the_truncated_pagerank(state):
    src = FriendPageRank(FriendPageRank.Config(k=50, restart=0.2, steps=4))
    src.prepare(state)
    u = state.users.index["alice"]
    want = ppr_by_hand(state, u, 0.2, 4)
    got = src.generate(Request("alice", Surface.PEOPLE, k=50), state)
    friends = set(state.friends_of(u).tolist())
    assert got and all(c.item not in friends and c.item != u for c in got)
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)
    for c in got:
        assert c.score == pytest.approx(want[c.item], rel=1e-12)
    outside = [v for v in range(state.n_users) if v not in friends and v != u and want[v] > 0]
    assert {c.item for c in got} == set(outside)  # k = 50 holds every reachable non-friend


@pytest.mark.parametrize("block_users", [1, 3, 1000])
def test_friend_pagerank_batch_equals_one_by_one(state, monkeypatch, block_users):
    monkeypatch.setattr(people_sources, "_BLOCK_CELLS", block_users * state.n_users)  # blocks of that many users
    src = FriendPageRank(FriendPageRank.Config(k=5))
    src.prepare(state)
    reqs = [Request(u, Surface.PEOPLE, k=5) for u in state.users.ids]
    one = [[(c.item, c.score) for c in src.generate(r, state)] for r in reqs]
    batch = [[(c.item, c.score) for c in cs] for cs in src.generate_batch(reqs, state)]
    assert batch == one and any(one)


def test_friend_pagerank_reads_live_friends_and_other_surfaces_get_nothing(state):
    src = FriendPageRank(FriendPageRank.Config(k=50))
    src.prepare(state)
    got = {c.item for c in src.generate(Request("alice", Surface.PEOPLE, k=50), state)}
    other = next(v for v in got)
    state.apply(Event(event_id="fa1", ts_us=state.now_us, type=EventType.FRIEND_ACCEPT, actor="alice",
                      target=state.users.ids[other], target_kind=TargetKind.USER))
    assert other not in {c.item for c in src.generate(Request("alice", Surface.PEOPLE, k=50), state)}
    assert src.generate(Request("alice", Surface.COMMUNITIES), state) == []
    new = Request("nobody", Surface.PEOPLE, new_user=NewUser(locale="en"))
    assert src.generate(new, state) == []


@pytest.mark.parametrize(("field", "cfg"), [("restart", {"restart": 1.0}), ("steps", {"steps": 0})])
def test_friend_pagerank_rejects_bad_config(state, field, cfg):
    with pytest.raises(ValidationError, match=field):
        FriendPageRank(FriendPageRank.Config(**cfg)).prepare(state)


def test_popular_people_most_connected_first_without_self_or_friends(state):
    src = PopularPeople(PopularPeople.Config(k=3))
    src.prepare(state)
    deg = np.diff(state.friend_csr().indptr)
    u = state.users.index["alice"]
    got = src.generate(Request("alice", Surface.PEOPLE), state)
    friends = set(state.friends_of(u).tolist())
    assert len(got) == 3 and all(c.item not in friends and c.item != u for c in got)
    assert [c.score for c in got] == [float(deg[c.item]) for c in got]
    best_other = max(deg[v] for v in range(state.n_users) if v not in friends and v != u)
    assert got[0].score == best_other
    assert got[0].reason.text == f"well connected: {int(best_other)} friends"
    new = src.generate(Request("nobody", Surface.PEOPLE, new_user=NewUser(locale="en")), state)
    assert [c.item for c in new][:1] == [int(np.lexsort((np.arange(deg.size), -deg))[0])]  # no friends: the top
