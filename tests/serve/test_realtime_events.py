"""An event posted through the API changes the user's next recommendations, without a retrain."""

from __future__ import annotations

import httpx

from serve_helpers import ADMIN_KEY, WRITE_KEY, auth


def _recs(client: httpx.Client, user: str, k: int, debug: bool = False) -> dict:
    r = client.get("/v1/recommendations/communities", params={"user_id": user, "k": k, "debug": debug},
                   headers=auth(ADMIN_KEY) if debug else {})
    assert r.status_code == 200
    return r.json()


def _post(client: httpx.Client, *events: dict) -> None:
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": list(events)})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == len(events)


def test_join_removes_the_community_from_the_cached_list_at_once(client: httpx.Client) -> None:
    user = "u21"
    first = _recs(client, user, 10)
    top = first["items"][0]["id"]
    assert _recs(client, user, 10)["cache"] == "hit"
    _post(client, {"event_id": "rt-join-1", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": user,
                   "target": top})
    after = _recs(client, user, 10)
    assert after["cache"] == "hit", "the cached list was edited, not recomputed"
    assert top not in [it["id"] for it in after["items"]]
    assert [it["id"] for it in after["items"]][:5] == [it["id"] for it in first["items"]][1:6]


def test_new_friendship_feeds_communities_your_friends_joined(client: httpx.Client) -> None:
    user = "u33"
    before = _recs(client, user, 50)
    # a community the user could be shown (it passed every rule) that no friend of theirs is in yet
    target = next(it["id"] for it in before["items"][10:] if "friends_joined" not in it["sources"])
    friend = "rt-new-friend"
    _post(client,
          {"event_id": "rt-f-join", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": friend, "target": target},
          {"event_id": "rt-f-accept", "ts": "2026-11-01T12:01:00Z", "type": "friend_accept", "actor": user,
           "target": friend})
    after = _recs(client, user, 50, debug=True)
    assert after["cache"] == "miss", "a new friendship recomputes the user's candidates"
    item = next(it for it in after["items"] if it["id"] == target)
    assert "friends_joined" in item["sources"]
    ranks = {it["id"]: it["rank"] for it in before["items"]}
    assert item["rank"] < ranks[target], "social proof moves it up"
