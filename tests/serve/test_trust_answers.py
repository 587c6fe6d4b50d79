"""Issue 13, finding 1: what an answer may carry. ``debug=true`` (trace, removed candidates with reasons) needs an
admin key; a normal answer carries no one's profile (age group, locale, interests, account age), not the
requester's own feature row, nothing that says the requester is a teen, and no hidden community."""

from __future__ import annotations

import re

import pytest
from trust_world import HIDDEN, INVITE_ONLY, RESTRICTED

from belong.serve.access import PUBLIC_FEATURES
from serve_helpers import ADMIN_KEY, WRITE_KEY, auth

SURFACES = ("communities", "people", "content")
TEENS = [f"u{i}" for i in range(10, 300, 5)][:12]  # every fifth user is a teen in the trust world
PRIVATE = re.compile(r"\b(teens?|adults?|age group|your age|under 18|locale|account age|blocked|pending)\b")


@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("key", [None, WRITE_KEY, "not-a-key"])
def test_debug_without_an_admin_key_is_refused_and_shows_nothing(trust_app, surface: str, key: str | None) -> None:
    r = trust_app.get(f"/v1/recommendations/{surface}", params={"user_id": TEENS[0], "debug": "true"},
                      headers=auth(key) if key else {})
    assert r.status_code == 403, r.text[:500]
    body = r.json()
    assert body["error"] == "forbidden" and "admin API key" in body["message"]
    assert set(body) == {"error", "message", "field", "reason"}  # no items, no trace


@pytest.mark.parametrize("surface", SURFACES)
def test_debug_with_the_admin_key_shows_the_trace(trust_app, surface: str) -> None:
    r = trust_app.get(f"/v1/recommendations/{surface}", params={"user_id": TEENS[0], "debug": "true"},
                      headers=auth(ADMIN_KEY))
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["debug"]["stage_ms"]["total"] > 0 and isinstance(body["debug"]["removed"], list)
    assert body["user_features"]  # the admin sees the ranker's inputs


@pytest.mark.parametrize("surface", SURFACES)
def test_a_normal_answer_carries_only_what_the_end_user_may_see(trust_app, surface: str) -> None:
    hidden = set(HIDDEN) | set(INVITE_ONLY) | set(RESTRICTED)
    seen_items = 0
    for user in TEENS:
        r = trust_app.get(f"/v1/recommendations/{surface}", params={"user_id": user, "k": 20})
        assert r.status_code == 200, r.text[:500]
        body = r.json()
        assert body["user_features"] == {}  # the requester's own profile row is not in the answer
        assert body.get("debug") is None
        for it in body["items"]:
            seen_items += 1
            assert set(it["features"]) <= PUBLIC_FEATURES, sorted(set(it["features"]) - PUBLIC_FEATURES)
            assert not PRIVATE.search(it["explanation"].lower()), it["explanation"]
            if surface == "communities":
                assert it["id"] not in hidden
    assert seen_items > 0


def test_the_feature_rows_are_for_admin_callers(trust_app) -> None:
    """The same request with the admin key carries the online feature rows (the leak, when anyone got them)."""
    params = {"user_id": TEENS[1], "k": 5}
    public = trust_app.get("/v1/recommendations/people", params=params).json()
    admin = trust_app.get("/v1/recommendations/people", params=params, headers=auth(ADMIN_KEY)).json()
    assert public["user_features"] == {} and admin["user_features"]["user_age_group"] == "teen"
    assert [it["id"] for it in public["items"]] == [it["id"] for it in admin["items"]]
    assert any(set(it["features"]) - PUBLIC_FEATURES for it in admin["items"])
