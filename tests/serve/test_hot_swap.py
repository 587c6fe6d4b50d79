"""Building a new model version through the API and swapping versions under steady load: no failed request."""

from __future__ import annotations

import threading
import time

import httpx

from serve_helpers import ADMIN_KEY, auth


def test_hot_swap_under_load_has_zero_failed_requests(server: str) -> None:
    with httpx.Client(base_url=server, timeout=120) as admin:
        v1 = admin.get("/v1/models").json()["active"]
        r = admin.post("/v1/models", headers=auth(ADMIN_KEY), params={"activate": False})
        assert r.status_code == 201, r.text
        built = r.json()
        assert built["active"] == v1, "building does not activate unless asked"
        v2 = next(v["version"] for v in built["versions"] if v["version"] != v1)

        statuses: list[int] = []
        versions: set[str] = set()
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=server, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    r = c.get("/v1/recommendations/communities", params={"user_id": f"u{i % 60}", "k": 5})
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        versions.add(r.json()["model_version"])
                    i += 1

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            for version in (v2, v1, v2, v1, v2):
                time.sleep(0.4)
                r = admin.post(f"/v1/models/{version}/activate", headers=auth(ADMIN_KEY))
                assert r.status_code == 200 and r.json()["active"] == version
            time.sleep(0.4)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert len(statuses) > 50
        assert [s for s in statuses if s != 200] == []
        assert versions == {v1, v2}
        # rollback: the previous version is named, and activating it restores it
        models = admin.get("/v1/models").json()
        assert models["active"] == v2 and models["previous"] == v1
        r = admin.post(f"/v1/models/{models['previous']}/activate", headers=auth(ADMIN_KEY))
        assert r.json()["active"] == v1
        after = admin.get("/v1/recommendations/communities", params={"user_id": "u1"}).json()
        assert after["model_version"] == v1
        assert f'belong_active_model{{version="{v1}"}} 1.0' in admin.get("/metrics").text
