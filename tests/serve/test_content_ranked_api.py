"""``GET /v1/recommendations/content`` with the learned content ranker (``belong serve --surface content_ranked``)
over a real server: ranked content with explanations and ``p_join`` (here p(engage)), no feature values without
an admin key, events folded in live, bad input a 4xx naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from belong import surfaces
from belong.toml_writer import dumps
from serve_helpers import ADMIN_KEY, WRITE_KEY, auth, run_server

PUBLIC = {"members", "friends_in", "mutual_friends", "p_join", "propensity", "explored"}


@pytest.fixture(scope="module")
def content_server(small_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    shipped = surfaces.load("content_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 40, "min_data_in_leaf": 20})  # an 800-user world
    path = tmp_path_factory.mktemp("content-ranked") / "content_small.toml"
    path.write_text(dumps(shipped), encoding="utf-8")
    with run_server(small_store, {"BELONG_BUDGET_SOURCES_MS": "30000"}, "--surface", str(path)) as (base, _):
        yield base


def test_ranked_content_carries_explanations_and_p_engage_but_no_feature_values(content_server: str) -> None:
    shown = 0
    with httpx.Client(base_url=content_server, timeout=60) as c:
        for i in range(0, 60, 3):
            r = c.get("/v1/recommendations/content", params={"user_id": f"u{i}", "k": 10})
            assert r.status_code == 200, r.text
            body = r.json()
            assert not body["degraded"] and body["user_features"] == {}
            scores = [it["score"] for it in body["items"]]
            assert scores == sorted(scores, reverse=True)
            for it in body["items"]:
                assert it["explanation"] and it["id"].startswith("x")
                assert set(it["features"]) <= PUBLIC, it["features"]  # no ranker inputs for an end user
                assert 0.0 <= it["features"]["p_join"] <= 1.0  # the learned ranker's (the blend gives none)
                shown += 1
        assert shown > 30
        admin = c.get("/v1/recommendations/content", params={"user_id": "u3", "k": 5, "debug": "true"},
                      headers=auth(ADMIN_KEY))
        assert admin.status_code == 200 and admin.json()["debug"] is not None
        assert c.get("/v1/recommendations/content", params={"user_id": "u3", "debug": "true"}).status_code == 403
        bad = c.get("/v1/recommendations/content", params={"user_id": "u3", "k": 0})
        assert 400 <= bad.status_code < 500 and "k" in bad.text
        unknown = c.get("/v1/recommendations/content", params={"user_id": "nobody-here"})
        assert unknown.status_code == 404


def test_an_engagement_posted_live_removes_the_item_from_the_next_answer(content_server: str) -> None:
    with httpx.Client(base_url=content_server, timeout=60) as c:
        for i in range(60, 160):
            first = c.get("/v1/recommendations/content", params={"user_id": f"u{i}", "k": 5}).json()["items"]
            if first:
                break
        top = first[0]["id"]
        sent = c.post("/v1/events", headers=auth(WRITE_KEY), json={"events": [
            {"event_id": "content-ranked-r1", "ts": "2026-11-01T12:00:00Z", "type": "reaction", "actor": f"u{i}",
             "target": top, "target_kind": "content"}]})
        assert sent.status_code in (200, 201, 202), sent.text
        again = c.get("/v1/recommendations/content", params={"user_id": f"u{i}", "k": 5}).json()["items"]
        assert top not in [it["id"] for it in again]


def test_the_shipped_content_surface_is_the_learned_ranker(client: httpx.Client) -> None:
    """The default server (no --surface): content answers come from ``content_ranker`` (p(engage) per item)."""
    shown = 0
    for i in range(0, 40, 4):
        body = client.get("/v1/recommendations/content", params={"user_id": f"u{i}", "k": 10}).json()
        for it in body["items"]:
            assert set(it["features"]) <= PUBLIC and 0.0 <= it["features"]["p_join"] <= 1.0
            shown += 1
    assert shown > 10
