"""friend_embedding: iALS factors of the friend graph as a people source."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from belong.domain import Event, EventType, Surface, TargetKind
from belong.errors import ValidationError
from belong.models import registry
from belong.pipeline import NewUser, Request
from belong.sources.people import FriendEmbedding
from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world

CFG = {"k": 50, "factors": 8, "iterations": 10, "seed": 3}


@pytest.fixture()
def state() -> WorldState:
    return from_world(toy_world())


@pytest.mark.parametrize("community_weight", [0.0, 2.0])
def test_scores_are_the_ials_inner_products_without_self_or_friends(state, community_weight):
    src = FriendEmbedding(FriendEmbedding.Config(**CFG, community_weight=community_weight))
    src.prepare(state)
    X = state.friend_csr()
    if community_weight:  # the memberships are extra columns of each person's row
        X = sp.hstack([X, state.membership_csr() * community_weight], format="csr")
    model = registry.create("ials", {"factors": 8, "iterations": 10, "regularization": 0.05, "alpha": 10.0,
                                     "random_state": 3}).fit(sp.csr_matrix(X, dtype=np.float32))
    u = state.users.index["alice"]
    want = model.item_factors @ model.user_factors[u]
    friends = set(state.friends_of(u).tolist())
    got = src.generate(Request("alice", Surface.PEOPLE, k=50), state)
    assert got and all(c.item not in friends and c.item != u for c in got)
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)
    for c in got:
        assert c.score == pytest.approx(float(want[c.item]), rel=1e-5)
    outside = {v for v in range(state.n_users) if v not in friends and v != u and want[v] > 0}
    assert {c.item for c in got} == outside  # k = 50 holds every positive-scored non-friend


def test_batch_equals_one_by_one_with_folded_in_users(state):
    src = FriendEmbedding(FriendEmbedding.Config(**CFG))
    src.prepare(state)
    # a fresh friendship after prepare: both sides are folded in, the batch must do the same
    u = state.users.index["alice"]
    a, b = "alice", next(state.users.ids[v] for v in range(state.n_users)
                         if v != u and v not in set(state.friends_of(u).tolist()))
    state.apply(Event(event_id="fa1", ts_us=state.now_us, type=EventType.FRIEND_ACCEPT, actor=a, target=b,
                      target_kind=TargetKind.USER))
    reqs = [Request(u, Surface.PEOPLE, k=50) for u in state.users.ids]
    reqs.append(Request("nobody", Surface.PEOPLE, new_user=NewUser(locale="en")))
    one = [[(c.item, c.score) for c in src.generate(r, state)] for r in reqs]
    batch = [[(c.item, c.score) for c in cs] for cs in src.generate_batch(reqs, state)]
    props = src.propose_batch(reqs, state)
    assert batch == one and sum(map(bool, one)) >= 5
    assert [list(zip(p.items.tolist(), p.scores.tolist(), strict=True)) for p in props] == one
    assert one[-1] == []  # no friends: nothing (popular_people is the fallback)


def test_live_friends_fold_the_user_in_and_other_surfaces_get_nothing(state):
    src = FriendEmbedding(FriendEmbedding.Config(**CFG))
    src.prepare(state)
    before = src.generate(Request("alice", Surface.PEOPLE, k=50), state)
    other = before[0].item
    state.apply(Event(event_id="fa1", ts_us=state.now_us, type=EventType.FRIEND_ACCEPT, actor="alice",
                      target=state.users.ids[other], target_kind=TargetKind.USER))
    after = src.generate(Request("alice", Surface.PEOPLE, k=50), state)
    assert other not in {c.item for c in after}
    u = state.users.index["alice"]
    assert src.model is not None
    trained = src.model.item_factors @ src.model.user_factors[u]
    assert any(c.score != pytest.approx(float(trained[c.item]), rel=1e-6) for c in after)  # folded in, not trained
    assert src.generate(Request("alice", Surface.COMMUNITIES), state) == []


def test_fitted_and_restored_give_the_same_candidates(state):
    src = FriendEmbedding(FriendEmbedding.Config(**CFG))
    src.prepare(state)
    again = FriendEmbedding(FriendEmbedding.Config(**CFG))
    again.restore(src.fitted(), state)
    for u in state.users.ids:
        r = Request(u, Surface.PEOPLE, k=50)
        got = [(c.item, c.score) for c in again.generate(r, state)]
        assert got == [(c.item, c.score) for c in src.generate(r, state)]


@pytest.mark.parametrize(("field", "cfg"), [("factors", {"factors": 0}), ("iterations", {"iterations": 0}),
                                            ("regularization", {"regularization": -1.0}), ("alpha", {"alpha": 0.0}),
                                            ("community_weight", {"community_weight": -1.0})])
def test_rejects_bad_config(state, field, cfg):
    with pytest.raises(ValidationError, match=field):
        FriendEmbedding(FriendEmbedding.Config(**cfg)).prepare(state)


def test_people_embedding_surface_round_trips_through_an_artifact(state, tmp_path):
    """The shipped ``people_embedding`` surface: its factors are saved (no pickle) and loaded back as they were."""
    from belong import surfaces
    from belong.training.artifact import MANIFEST, load_pipeline, write_manifest, write_surface

    fitted = surfaces.load("people_embedding").fit(state)
    entry = write_surface(tmp_path, fitted)
    assert set(entry["sources"]["friend_embedding"]["fitted"]) == {"user_factors", "item_factors", "trained_rows"}
    write_manifest(tmp_path, {"version": "test", "surfaces": {"people": entry}})
    assert (tmp_path / MANIFEST).exists() and not list(tmp_path.rglob("*.pkl"))
    loaded = load_pipeline(tmp_path, "people", state)
    was, now = (next(s for s in p.sources if s.name == "friend_embedding") for p in (fitted, loaded))
    assert now.model is not None and was.model is not None
    assert np.array_equal(now.model.user_factors, was.model.user_factors)
    assert any("friend_embedding" in it.sources for u in state.users.ids
               for it in loaded.run(Request(u, Surface.PEOPLE, k=10, explain=False)).items)
    for u in state.users.ids:
        r = Request(u, Surface.PEOPLE, k=10, explain=False)
        assert [(s.id, s.score) for s in loaded.run(r).items] == [(s.id, s.score) for s in fitted.run(r).items]
