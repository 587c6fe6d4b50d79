"""Issue 13, finding 6 (smaller points), each against the real app: request ids unpredictable, malformed JSON
answers 400 as OpenAPI says, ``k`` parsed strictly, impressions idempotent per user, a batch that gives one event
id two contents refused naming the field, a 405's ``Allow``. (The artifact fallback and ``/v1/models`` without
filesystem paths: ``test_serve_artifact.py``.)"""

from __future__ import annotations

import pytest

from serve_helpers import ADMIN_KEY, WRITE_KEY, auth


def test_request_ids_are_unpredictable(trust_app) -> None:
    ids = [trust_app.get("/v1/recommendations/communities", params={"user_id": "u12", "k": 3}).json()["request_id"]
           for _ in range(40)]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and len(set(ids)) == len(ids)
    # no shared prefix, no counter: knowing one id tells nothing about the next
    assert len({i[:8] for i in ids}) == len(ids) and len({i[-8:] for i in ids}) == len(ids)
    assert sorted(ids) != ids or sorted(ids, reverse=True) != ids


@pytest.mark.parametrize("path", ["/v1/events", "/v1/impressions"])
@pytest.mark.parametrize("body", [b'{"events": [', b"not json", b'{"items": [1,]}'])
def test_malformed_json_is_a_400_naming_the_body_as_openapi_documents(trust_app, path: str, body: bytes) -> None:
    r = trust_app.post(path, content=body, headers={**auth(WRITE_KEY), "content-type": "application/json"})
    assert r.status_code == 400, r.text
    got = r.json()
    assert got["error"] == "bad_request" and got["field"] == "body" and "not valid JSON" in got["message"]
    documented = trust_app.get("/openapi.json").json()["paths"][path]["post"]["responses"]
    assert "400" in documented


@pytest.mark.parametrize("url", ["/v1/recommendations/people?user_id=u12&k={k}", "/v1/users/u12/similar?k={k}",
                                 "/v1/communities/c0/similar?k={k}"])
@pytest.mark.parametrize("k", ["1_0", " 7", "+7", "7.0", "\uff17", "0x7", "1e1"])
def test_k_is_parsed_strictly(trust_app, url: str, k: str) -> None:
    r = trust_app.get(url.format(k=k))
    assert r.status_code == 422 and r.json()["field"] == "k", r.text


def test_k_in_plain_digits_is_taken(trust_app) -> None:
    r = trust_app.get("/v1/users/u12/similar?k=7")
    assert r.status_code == 200 and len(r.json()["items"]) <= 7


def test_an_impression_of_another_user_is_not_a_duplicate(trust_app) -> None:
    def post(user: str):
        return trust_app.post("/v1/impressions", headers=auth(WRITE_KEY), json={
            "request_id": "req-shared-1", "user_id": user, "surface": "communities", "ts": 1_780_000_000.0,
            "items": [{"item_id": "c4", "position": 0, "propensity": 1.0}]})

    first, second, again = post("u10"), post("u11"), post("u11")
    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert second.json() == {"accepted": 1, "duplicates": 0}  # u11's own impression, not u10's duplicate
    assert again.json() == {"accepted": 0, "duplicates": 1}  # a re-send of u11's is


def test_one_event_id_with_two_contents_in_a_batch_is_refused_naming_the_field(trust_app) -> None:
    view = {"event_id": "conflict-1", "ts": "2026-11-01T00:00:00Z", "type": "view", "actor": "u12", "target": "c4"}
    join = view | {"type": "join"}
    r = trust_app.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [view, join]})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "events[1].event_id" and "events[0]" in r.json()["message"]
    same = trust_app.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [view, dict(view)]})
    assert same.status_code == 202 and same.json() == {"accepted": 1, "duplicates": 1}  # the same event twice
    imp = {"request_id": "req-c", "user_id": "u12", "surface": "communities", "ts": 1_780_000_000.0,
           "items": [{"item_id": "c4", "position": 0, "propensity": 1.0},
                     {"item_id": "c4", "position": 0, "propensity": 0.5}]}
    r = trust_app.post("/v1/impressions", headers=auth(WRITE_KEY), json=imp)
    assert r.status_code == 422 and r.json()["field"] == "items[1]", r.text


@pytest.mark.parametrize("ts", ["1e308", 1e308, "-1e308"])
def test_a_timestamp_too_large_to_scale_is_a_422_not_a_500(trust_app, ts) -> None:
    """Found by the atheris fuzzer (tests/fuzz): ``round(1e308 * 1e6)`` raised OverflowError -> 500."""
    event = {"event_id": "huge-ts", "ts": ts, "type": "view", "actor": "u12", "target": "c4"}
    r = trust_app.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [event]})
    assert r.status_code == 422 and r.json()["field"] == "events[0].ts", r.text


def test_a_405_lists_every_method_of_the_path(trust_app) -> None:
    """Found by schemathesis (ST205): OPTIONS /v1/models answered ``Allow: GET`` though POST is a route too."""
    # the guard asks for a credential first (an unknown method on an admin path needs the admin key)
    assert trust_app.request("OPTIONS", "/v1/models").status_code == 401
    r = trust_app.request("OPTIONS", "/v1/models", headers=auth(ADMIN_KEY))
    assert r.status_code == 405 and r.headers["allow"] == "GET, POST", r.headers
    assert trust_app.request("DELETE", "/v1/events", headers=auth(ADMIN_KEY)).headers["allow"] == "POST"
