"""The API contract of every route, against a real server process."""

from __future__ import annotations

import httpx
import pytest

from serve_helpers import ADMIN_KEY, WRITE_KEY, auth

SURFACES = ("communities", "people", "content")


def _a_user(client: httpx.Client, start: int = 0) -> str:
    """A simulated user with a non-empty communities list."""
    for i in range(start, start + 200):
        r = client.get("/v1/recommendations/communities", params={"user_id": f"u{i}", "k": 5})
        if r.status_code == 200 and r.json()["items"]:
            return f"u{i}"
    raise AssertionError("no user with recommendations")


@pytest.mark.parametrize("surface", SURFACES)
def test_recommendations_shape(client: httpx.Client, surface: str) -> None:
    user = _a_user(client)
    r = client.get(f"/v1/recommendations/{surface}", params={"user_id": user, "k": 7})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["surface"] == surface and body["user_id"] == user and body["k"] == 7
    assert body["degraded"] is False and body["degraded_reasons"] == []
    assert body["cache"] in ("hit", "miss", "stale") and len(body["request_id"]) == 32
    assert 0 < len(body["items"]) <= 7
    ranks = [it["rank"] for it in body["items"]]
    assert ranks == list(range(1, len(ranks) + 1))
    scores = [it["score"] for it in body["items"]]
    assert scores == sorted(scores, reverse=True)
    for it in body["items"]:
        assert it["source"] == it["sources"][0] and it["explanation"]
        assert it["position"] == it["rank"] - 1 and it["propensity"] == 1.0
    assert "debug" not in body
    if surface == "communities":  # online features (the user's once, each item's own): admin callers only
        assert body["user_features"] == {} and "community_size" not in body["items"][0]["features"]
        full = client.get(f"/v1/recommendations/{surface}", params={"user_id": user, "k": 7},
                          headers=auth(ADMIN_KEY)).json()
        assert full["user_features"]["user_communities_joined"] >= 1
        assert "community_size" in full["items"][0]["features"]


def test_recommendations_debug_trace(client: httpx.Client) -> None:
    user = _a_user(client, 10)
    client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
        {"event_id": f"contract-join-{user}", "ts": "2026-11-01T00:00:00Z", "type": "friend_accept",
         "actor": user, "target": "u799"}]})  # a friendship drops the cached list: the next request runs sources
    body = client.get("/v1/recommendations/communities", params={"user_id": user, "k": 5, "debug": True},
                      headers=auth(ADMIN_KEY)).json()
    dbg = body["debug"]
    assert body["cache"] == "miss"
    assert {"cache", "sources", "rules", "select", "hydrate", "features", "respond", "total"} <= set(dbg["stage_ms"])
    assert set(dbg["source_ms"]) >= {"ials_ann", "co_membership", "pixie", "friends_joined", "trending"}
    assert dbg["candidates"] >= len(body["items"])
    for rem in dbg["removed"]:
        assert rem["filter"] and rem["reason"] and rem["when"] in ("sources", "request")
    again = client.get("/v1/recommendations/communities", params={"user_id": user, "k": 5, "debug": True},
                       headers=auth(ADMIN_KEY)).json()
    assert again["cache"] == "hit" and "sources" not in again["debug"]["stage_ms"]
    assert [i["id"] for i in again["items"]] == [i["id"] for i in body["items"]]


def test_recommendations_errors(client: httpx.Client) -> None:
    r = client.get("/v1/recommendations/communities", params={"user_id": "nobody-knows-me"})
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "nobody-knows-me" in r.json()["message"]
    r = client.get("/v1/recommendations/communities", params={"user_id": "u1", "k": 0})
    assert r.status_code == 422 and r.json()["field"] == "k"
    r = client.get("/v1/recommendations/galaxies", params={"user_id": "u1"})
    assert r.status_code == 422 and r.json()["field"] == "surface"
    r = client.get("/v1/recommendations/communities")
    assert r.status_code == 422 and r.json()["field"] == "user_id"
    r = client.get("/v1/recommendations/communities", params={"user_id": "a\x01b"})
    assert r.status_code == 422 and "control" in r.json()["reason"]


def test_new_user_cold_start(client: httpx.Client) -> None:
    r = client.get("/v1/recommendations/communities",
                   params={"user_id": "brand-new", "locale": "en", "age_group": "adult", "interests": "gaming,music"})
    assert r.status_code == 200
    assert r.json()["items"], "a new user with sign-up facts still gets a list"


def test_similar(client: httpx.Client) -> None:
    r = client.get("/v1/communities/c1/similar", params={"k": 5})
    assert r.status_code == 200
    items = r.json()["items"]
    assert 0 < len(items) <= 5 and all(it["id"] != "c1" for it in items)
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    assert " in common" in items[0]["explanation"]
    user = _a_user(client)
    r = client.get(f"/v1/users/{user}/similar", params={"k": 3})
    assert r.status_code == 200 and all(it["id"] != user for it in r.json()["items"])
    assert client.get("/v1/communities/nope/similar").status_code == 404
    assert client.get("/v1/users/nope/similar").status_code == 404


def test_events_batch_all_or_nothing_and_idempotent(client: httpx.Client) -> None:
    good = {"event_id": "contract-e1", "ts": "2026-11-01T10:00:00Z", "type": "message", "actor": "u5",
            "target": "c2", "value": 2}
    bad = {"event_id": "contract-e2", "ts": "2026-11-01T10:00:00Z", "type": "message", "actor": "u5",
           "target": "c2", "value": -1}
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [good, bad]})
    assert r.status_code == 422
    assert r.json()["field"] == "events[1].value" and "> 0" in r.json()["reason"]
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [good]})
    assert r.status_code == 202 and r.json() == {"accepted": 1, "duplicates": 0}  # the rejected batch stored nothing
    r = client.post("/v1/events", headers=auth(ADMIN_KEY), json={"events": [good]})
    assert r.status_code == 202 and r.json() == {"accepted": 0, "duplicates": 1}
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": []})
    assert r.status_code == 422 and r.json()["field"] == "events"
    r = client.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [{**good, "colour": "red"}]})
    assert r.status_code == 422 and r.json()["field"] == "events[0].colour"


def test_impressions(client: httpx.Client) -> None:
    user = _a_user(client)
    rec = client.get("/v1/recommendations/communities", params={"user_id": user, "k": 3}).json()
    batch = {"request_id": rec["request_id"], "user_id": user, "surface": "communities",
             "items": [{"item_id": it["id"], "position": it["position"], "propensity": it["propensity"]}
                       for it in rec["items"]]}
    r = client.post("/v1/impressions", headers=auth(WRITE_KEY), json=batch)
    assert r.status_code == 202 and r.json() == {"accepted": len(rec["items"]), "duplicates": 0}
    r = client.post("/v1/impressions", headers=auth(WRITE_KEY), json=batch)
    assert r.json() == {"accepted": 0, "duplicates": len(rec["items"])}
    r = client.post("/v1/impressions", headers=auth(WRITE_KEY), json={**batch, "surface": "moons"})
    assert r.status_code == 422 and r.json()["field"] == "surface"
    bad = {**batch, "items": [{"item_id": "c1", "position": 0, "propensity": 1.5}]}
    r = client.post("/v1/impressions", headers=auth(WRITE_KEY), json=bad)
    assert r.status_code == 422 and r.json()["field"].startswith("items.0.propensity")


def test_auth(client: httpx.Client) -> None:
    body = {"events": [{"event_id": "auth-1", "ts": 1_700_000_000, "type": "view", "actor": "u1", "target": "x1"}]}
    r = client.post("/v1/events", json=body)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in r.json()["message"]
    r = client.post("/v1/events", json=body, headers=auth("wrong"))
    assert r.status_code == 401 and r.json()["message"] == "invalid API key or token"
    r = client.post("/v1/events", json=body, headers={"Authorization": "Basic abc"})
    assert r.status_code == 401 and "Bearer" in r.json()["message"]
    r = client.post("/v1/models/whatever/activate", headers=auth(WRITE_KEY))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = client.post("/v1/models/whatever/activate")
    assert r.status_code == 401
    r = client.post("/v1/events", json={"not": "events"})  # auth is checked before the body
    assert r.status_code == 401


def test_models_health_metrics(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["active"] and models["building"] is False
    assert any(v["active"] and v["version"] == models["active"] for v in models["versions"])
    r = client.post("/v1/models/no-such-version/activate", headers=auth(ADMIN_KEY))
    assert r.status_code == 404 and r.json()["field"] == "version"
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["model_version"] == models["active"] and ready["features"] == "ok"
    client.get("/v1/recommendations/communities", params={"user_id": _a_user(client)})
    text = client.get("/metrics").text
    for name in ("belong_request_seconds_bucket", "belong_stage_seconds_bucket", "belong_candidate_cache_total",
                 "belong_events_total", "belong_active_model"):
        assert name in text
    assert 'stage="rules"' in text and 'surface="communities"' in text
    r = client.get("/v1/nowhere")
    assert r.status_code == 404 and r.json()["error"] == "not_found"
