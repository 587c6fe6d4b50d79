from __future__ import annotations

import pytest

from belong import surfaces
from belong.domain import AgeGroup, Surface
from belong.errors import UnknownIdError, ValidationError
from belong.pipeline import NewUser, Pipeline, Request
from belong.state import from_world
from belong.testing.toy_world import toy_world


def fitted(surface: str, state) -> Pipeline:
    p = surfaces.load(surface)
    for s in p.sources:
        if s.type_name == "ials_ann":
            s.config.factors, s.config.iterations = 4, 3
    return p.fit(state)


@pytest.fixture(scope="module")
def communities():
    """Fitted once per module; tests that change the state build their own."""
    return fitted("communities", from_world(toy_world()))


def ids(resp) -> list[str]:
    return [it.id for it in resp.items]


def test_every_item_is_explained_and_ranked(communities):
    resp = communities.run(Request("alice", k=5))
    assert 0 < len(resp.items) <= 5
    assert [it.rank for it in resp.items] == list(range(1, len(resp.items) + 1))
    scores = [it.score for it in resp.items]
    assert scores == sorted(scores, reverse=True)
    for it in resp.items:
        assert it.sources and it.explanation and set(it.reasons) == set(it.sources)
        assert it.explanation.split("; ")[0] == it.reasons[it.sources[0]]


def test_friends_joined_explanation_in_words(communities):
    resp = communities.run(Request("alice", k=10))
    gaming = next(it for it in resp.items if it.id == "gaming")
    # bob, grace and frank (friends of alice) are members of gaming
    assert gaming.reasons["friends_joined"].startswith("3 of your friends are members")


def test_filters_remove_with_reasons_in_trace(communities):
    resp = communities.run(Request("alice", k=20))
    # the shipped surfaces apply one safety policy; each reason is "<rule>: <why>"
    removed = {}
    for r in resp.trace.removed:
        assert r.filter == "safety_rules"
        rule, why = r.reason.split(": ", 1)
        removed[(rule, communities.item_id(r.item))] = why
    assert removed[("blocked", "speedrun")] == "you blocked this community"
    assert removed[("not_discoverable", "hidden")] == "the community is not discoverable"
    assert removed[("not_discoverable", "club")] == "the community is invite-only"
    assert removed[("inactive", "gone")] == "it was deleted"
    got = set(ids(resp))
    assert not got & {"rust", "zig", "speedrun", "hidden", "club", "gone"}
    assert "adults" in got or ("age_restricted", "adults") not in removed  # alice is an adult: not filtered


def test_age_restricted_hidden_from_teens_and_unknown_age(communities):
    for user in ("carol", "erin"):
        resp = communities.run(Request(user, k=20))
        assert "adults" not in ids(resp)
        reasons = [r.reason.split(": ", 1)[1] for r in resp.trace.removed if r.reason.startswith("age_restricted: ")]
        assert reasons and all(r.startswith("age-restricted, not shown to") for r in reasons)


def test_trace_has_every_stage_and_source(communities):
    t = communities.run(Request("bob", k=3)).trace
    assert list(t.stage_ms) == ["sources", "hydrate", "filter", "score", "rules", "select", "total"]
    assert set(t.source_ms) == {s.name for s in communities.sources} == set(t.source_counts)
    d = t.to_dict(communities.item_id)
    assert d["candidates"] == t.n_candidates and all(isinstance(r["id"], str) for r in d["removed"])


def test_brand_new_user_gets_cold_start_list(communities):
    req = Request("newbie", k=5, new_user=NewUser(locale="en", age_group=AgeGroup.ADULT, interests=("gaming",)))
    resp = communities.run(req)
    assert resp.items
    srcs = {s for it in resp.items for s in it.sources}
    assert srcs <= {"trending", "text_match", "new_communities"}
    assert any("#gaming" in it.explanation for it in resp.items)


def test_brand_new_community_is_reachable(communities):
    resp = communities.run(Request("u0", k=20))  # u0 is into gaming
    fresh = next(it for it in resp.items if it.id == "newgame")
    assert "new_communities" in fresh.sources
    assert fresh.reasons["new_communities"] == "new community matching #gaming"


def test_people_surface(state):
    people = fitted("people", state)
    resp = people.run(Request("alice", Surface.PEOPLE, k=10))
    got = ids(resp)
    assert "alice" not in got and not {"bob", "grace", "frank"} & set(got)
    assert "u5" not in got and "erin" not in got  # blocked in either direction
    heidi = next(it for it in resp.items if it.id == "heidi")
    assert heidi.reasons["friends_of_friends"] == "2 mutual friends: bob, grace"
    assert heidi.features["mutual_friends"] == 2.0
    new = people.run(Request("nb", Surface.PEOPLE, k=5,
                             new_user=NewUser(locale="de", age_group=AgeGroup.ADULT, interests=("python",))))
    # no friends yet: shared interests, and the most connected people as the fallback
    assert new.items and all(set(it.sources) <= {"similar_people", "popular_people"} for it in new.items)
    assert "similar_people" in new.items[0].sources
    assert new.items[0].explanation.startswith("also into #python and speaks de")
    # the shipped policy treats unknown age as under 18: adult strangers are never suggested, the trace says why
    unknown = people.run(Request("nb", Surface.PEOPLE, k=5, new_user=NewUser(locale="de", interests=("python",))))
    assert all(state.users.age_group[state.users.index[it.id]] != "adult" for it in unknown.items)
    assert any(r.reason.startswith("strangers: ") for r in unknown.trace.removed)


def test_content_surface(state):
    content = fitted("content", state)
    resp = content.run(Request("alice", Surface.CONTENT, k=10))
    got = ids(resp)
    assert "post-rust-2" in got and "post-gone" not in got
    first = next(it for it in resp.items if it.id == "post-rust-2")
    assert first.reasons["community_content"] == "new in Rust Lang, one of your communities"
    carol = content.run(Request("carol", Surface.CONTENT, k=10))
    assert "post-adult" not in ids(carol)


def test_k_unknown_user_and_surface_mismatch(communities):
    assert len(communities.run(Request("bob", k=1)).items) == 1
    with pytest.raises(UnknownIdError, match="unknown user id: 'ghost'"):
        communities.run(Request("ghost"))
    with pytest.raises(ValidationError, match="k"):
        Request("bob", k=0)
    with pytest.raises(ValidationError, match="surface"):
        communities.run(Request("bob", Surface.PEOPLE))


def test_apply_is_reflected_without_refit(state):
    from belong.domain import Event, EventType, TargetKind

    communities = fitted("communities", state)
    before = ids(communities.run(Request("alice", k=20)))
    assert "gaming" in before
    state.apply(Event(event_id="x1", ts_us=state.now_us, type=EventType.JOIN, actor="alice", target="gaming",
                      target_kind=TargetKind.COMMUNITY))
    after = communities.run(Request("alice", k=20))
    assert "gaming" not in ids(after)
    ials = next(s for s in communities.sources if s.type_name == "ials_ann")
    a = state.users.index["alice"]
    folded = ials.user_vector(state, a, state.communities_of(a))
    assert folded is not None and not (folded == ials.model.user_factors[a]).all()  # folded in, no retrain


def test_only_restricts_sources(communities):
    weights = dict(communities.scorer.source_weights)
    solo = communities.only(["friends_joined"])
    assert communities.scorer.source_weights == weights  # the full pipeline keeps its blend
    resp = solo.run(Request("alice", k=5))
    assert resp.items and all(list(it.sources) == ["friends_joined"] for it in resp.items)
    with pytest.raises(ValidationError, match="unknown source"):
        communities.only(["nope"])


@pytest.mark.parametrize("surface", [Surface.COMMUNITIES, Surface.PEOPLE, Surface.CONTENT])
def test_social_counts_match_a_brute_force_count(surface):
    from belong.pipeline.hydrators import SocialHydrator
    from belong.pipeline.types import Merged

    state = from_world(toy_world())
    n = {Surface.COMMUNITIES: state.n_communities, Surface.PEOPLE: state.n_users, Surface.CONTENT: state.n_content}
    for uid in state.users.ids:
        req = Request(uid, surface)
        cands = [Merged(i) for i in range(n[surface])]
        SocialHydrator().hydrate(req, state, cands)
        friends = set(state.profile(req).friends.tolist())
        for m in cands:
            if surface is Surface.PEOPLE:
                want = len(friends & set(state.friends_of(m.item).tolist()))
                assert m.features["mutual_friends"] == want
                assert m.features["friends"] == state.friends_of(m.item).size
            else:
                c = m.item if surface is Surface.COMMUNITIES else state.content.community[m.item]
                assert m.features["friends_in"] == len(friends & set(state.members_of(c).tolist()))
                assert m.features["members"] == state.members_of(c).size


def test_why_not_answers_for_shown_removed_below_the_cut_and_absent_items(communities):
    state = communities.state
    req = Request("alice", k=2)
    shown = communities.run(req).items
    first = communities.why_not(req, shown[0].id)
    assert first.verdict == "shown" and first.rank == 1 and first.sources
    removed = communities.why_not(req, "speedrun")  # alice blocked it
    assert removed.verdict == "removed" and removed.filter == "safety_rules" and "blocked" in (removed.reason or "")
    full = communities.candidates(Request("alice", k=2))
    if len(full.ranked) > 2:  # the third ranked candidate is below a cut of two
        third = communities.item_id(full.ranked[2][0].item)
        below = communities.why_not(req, third)
        assert below.verdict == "below_cut" and below.position == 3 and below.score is not None
    made = {communities.item_id(m.item) for m, _ in full.ranked} | {communities.item_id(r.item) for r in full.removed}
    absent = next(c for c in state.communities.ids if c not in made)
    assert communities.why_not(req, absent).verdict == "not_a_candidate"
    with pytest.raises(UnknownIdError):
        communities.why_not(req, "no-such-community")
