"""The dashboard driven in a real browser: headless Chromium from Debian's package (``/usr/bin/chromium``) through
Playwright, against a real ``belong serve`` (uvicorn) over a small simulated world with a trained artifact.

One walk through every page: log in, overview, live (polled figures drawn), find a user, "why not X" for a removed
and for a low-ranked community, a what-if in the sandbox (the real list unchanged), a real event posted through
the API changing the list, build / activate / roll back a version, an experiment created
through the API seen and stopped on the experiments page, log out. Every page passes an axe
check with no serious or critical violations, fits a 375 px wide screen, and the browser logs no console error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from belong import surfaces
from serve_helpers import ADMIN_KEY, auth, run_server

CHROMIUM = "/usr/bin/chromium"
USER = "u1"
#: set to a folder (docs/img) to keep a screenshot of each page: the README's and docs/DASHBOARD.md's pictures
SHOTS = os.environ.get("BELONG_DASHBOARD_SHOTS")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; "
                              ".ci/run does)"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Its own store (events are posted to it) of 800 users x 80 communities, and a trained artifact."""
    from belong.datasets import write_world
    from belong.eventlog import open_store
    from belong.simulate import simulate
    from belong.toml_writer import dumps

    tmp = tmp_path_factory.mktemp("dashboard")
    store = tmp / "store"
    with open_store(store) as st:
        for part in simulate(800, 80, seed=3):
            write_world(st, part, progress=False)
    shipped = surfaces.load("communities_ranked").to_dict()
    shipped["scorer"].update({"users": 300, "rounds": 60, "min_data_in_leaf": 20})
    toml = tmp / "ranked_small.toml"
    toml.write_text(dumps(shipped), encoding="utf-8")
    out = tmp / "models"
    belong = str(Path(sys.executable).with_name("belong"))
    done = subprocess.run([belong, "train", "--store", str(store), "--out", str(out), "--surface", str(toml),
                           "--json"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["version"]
    return store, out


@pytest.fixture(scope="module")
def server(trained: tuple[Path, Path]) -> Iterator[str]:
    store, models = trained
    with run_server(store, {"BELONG_BUDGET_SOURCES_MS": "30000"}, "--models", str(models)) as (base, _):
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


class Walk:
    """A page with the checks every visit makes: console errors collected, axe, a phone's width."""

    def __init__(self, page: Any, base: str) -> None:
        from axe_playwright_python.sync_playwright import Axe

        self.page, self.base, self.axe = page, base, Axe()
        self.errors: list[str] = []
        #: pages answered with an error status on purpose (a refused login): the browser logs
        #: their status as a console error, which is expected there and nowhere else
        self.refused: set[str] = set()
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.checked: list[str] = []

    def _console(self, m: Any) -> None:
        if m.type != "error":
            return
        url = m.location.get("url", "").split("?")[0]
        if m.text.startswith("Failed to load resource") and url in self.refused:
            return
        self.errors.append(f"console {m.type}: {m.text} at {url}")

    def go(self, path: str) -> Any:
        response = self.page.goto(self.base + path)
        assert response is not None and response.ok, (path, response and response.status)
        return response

    def accessible(self, name: str) -> None:
        results = self.axe.run(self.page)
        bad = [(v["id"], v["impact"], v["help"], [n["target"] for n in v["nodes"]][:3])
               for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{name}: {bad}"
        self.checked.append(name)

    def fits_phone(self, name: str) -> None:
        """At 375 px wide nothing makes the page scroll sideways (wide tables scroll in their own box)."""
        self.page.set_viewport_size({"width": 375, "height": 800})
        width = self.page.evaluate("document.documentElement.scrollWidth")
        self.page.set_viewport_size({"width": 1200, "height": 900})
        assert width <= 375, f"{name} is {width} px wide at a 375 px viewport"

    def check(self, name: str) -> None:
        self.accessible(name)
        self.fits_phone(name)
        self.shoot(name)

    def shoot(self, name: str, width: int = 1000, at: str | None = None) -> None:
        if SHOTS:
            self.page.set_viewport_size({"width": width, "height": 760})
            if at:
                self.page.locator(at).evaluate("e => e.scrollIntoView()")
            self.page.screenshot(path=str(Path(SHOTS) / f"dashboard-{name.replace(' ', '-')}.png"))
            self.page.set_viewport_size({"width": 1200, "height": 900})


def _text(page: Any, selector: str) -> str:
    return str(page.locator(selector).inner_text())


def _top_item(page: Any) -> str:
    return str(page.locator("#list-communities tbody tr").first.get_attribute("data-id"))


def test_dashboard_in_a_real_browser(server: str, browser: Any) -> None:
    import httpx

    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    w = Walk(page, server)

    # login: unauthenticated pages send to the form; a wrong key is refused, the admin key opens a session
    w.go("/dashboard/models")
    assert "/dashboard/login" in page.url
    assert page.evaluate("document.activeElement.id") == "key"  # the key field has the focus: type, Enter
    w.check("login")
    w.refused.add(f"{server}/dashboard/login")
    page.fill("#key", "not-the-key")
    page.keyboard.press("Enter")
    page.wait_for_selector("#login-error")
    assert "unknown key" in _text(page, "#login-error")
    w.accessible("login refused")
    page.fill("#key", ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url("**/dashboard/models")
    cookie = next(c for c in context.cookies() if c["name"] == "belong_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and ADMIN_KEY not in cookie["value"]

    # traffic for the live page, then overview and live
    with httpx.Client(base_url=server, timeout=60) as c:
        for i in range(30):
            assert c.get("/v1/recommendations/communities", params={"user_id": f"u{i}", "k": 5}).status_code == 200
    w.go("/dashboard/overview")
    assert page.locator("h1").inner_text() == "Overview"
    page.keyboard.press("Tab")  # the first stop is the skip link, which moves the focus to the content
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert "active" in _text(page, "#h-versions + h3") or page.locator("text=active:").count() >= 1
    w.check("overview")
    w.go("/dashboard/live")
    page.wait_for_selector("body[data-updated]")
    page.wait_for_selector("#chart-rps svg polyline", state="attached")
    requests_cell = page.locator('#surface-table tr[data-surface="communities"] td[data-f="requests"]')
    assert int(requests_cell.inner_text()) >= 30
    w.check("live")

    # find a user by typing part of the id (suggestions), then the user
    w.go("/dashboard/users")
    page.fill("#user_id", USER.upper())
    page.keyboard.press("Enter")
    page.wait_for_selector("p.error")
    assert "did you mean" in _text(page, "p.error")
    page.get_by_role("link", name=USER, exact=True).click()
    page.wait_for_selector("#list-communities tbody tr[data-id]")
    w.check("users")
    page.get_by_role("navigation", name="Surfaces").get_by_role("link", name="all surfaces").click()
    page.wait_for_selector("#list-people tbody tr[data-id]")
    assert page.locator("#list-content").count() == 1
    page.get_by_role("navigation", name="Surfaces").get_by_role("link", name="communities").click()
    page.wait_for_selector("#list-communities tbody tr[data-id]")
    assert page.locator("#list-people").count() == 0

    # why not X: a removed community (through its link) and a low-ranked one (through the form)
    removed = page.locator("#removed-communities tbody tr[data-id]").first
    removed_id = removed.get_attribute("data-id")
    rule = removed.locator("td").nth(1).inner_text()
    removed.get_by_role("link").click()
    page.wait_for_selector("#why-answer")
    answer = _text(page, "#why-answer")
    assert "removed" in answer and f"removed by {rule}" in answer and removed_id in answer
    low = page.locator("#below-communities tbody tr[data-id]").last
    low_id, position = low.get_attribute("data-id"), int(low.locator("td").first.inner_text())
    page.select_option("#why_surface", "communities")
    page.fill("#why_not", str(low_id))
    page.locator("#why form button").click()
    page.wait_for_selector("#why-answer")
    answer = _text(page, "#why-answer")
    assert "below cut" in answer and f"ranked {position} of" in answer, answer
    w.accessible("users with a why-not answer")
    w.shoot("why-not", at="#why")

    # what-if: joining the top community in the sandbox takes it off the list; the real list keeps it
    top = _top_item(page)
    page.select_option("#event_type", "join")
    page.fill("#target", top)
    page.locator("#what-if form button").click()
    page.wait_for_selector("#whatif-communities")
    gone = page.locator(f'#whatif-communities tr.change-gone:has(code:text-is("{top}"))')
    assert gone.count() == 1
    assert _top_item(page) == top  # the page's real list, run again after the what-if
    w.accessible("users with a what-if")
    w.shoot("what-if", at="#what-if")
    w.shoot("phone", width=375, at="#h-communities")

    # a real event through the API changes the list
    with httpx.Client(base_url=server, timeout=60) as c:
        r = c.post("/v1/events", headers=auth(ADMIN_KEY), json={"events": [
            {"event_id": f"dash-{time.time_ns()}", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": USER,
             "target": top}]})
        assert r.status_code == 202, r.text
    w.go(f"/dashboard/users?user_id={USER}")
    assert page.locator(f'#list-communities tr[data-id="{top}"]').count() == 0

    # models: build a version, activate it, roll back
    w.go("/dashboard/models")
    first = _text(page, "#active-version")
    page.get_by_role("button", name="Build a version from the log").click()
    page.wait_for_selector("#model-message")
    built = _text(page, "#model-message").split("version ")[1].rstrip(".")
    page.get_by_role("button", name=f"Activate {built}").click()
    page.wait_for_selector("#model-message")
    assert _text(page, "#active-version") == built and _text(page, "#previous-version") == first
    w.check("models")
    assert page.locator("svg.chart").count() >= 2  # feature importance and calibration, drawn by the server
    w.shoot("ranker", at=".side h3")
    page.get_by_role("button", name=f"Roll back to {first}").click()
    page.wait_for_selector("#model-message")
    assert _text(page, "#active-version") == first
    assert "Rolled back" in _text(page, "#model-message")
    with httpx.Client(base_url=server, timeout=60) as c:
        assert c.get("/v1/models").json()["active"] == first

    # experiments: one created through the API with the admin key and served to some users; the page lists it,
    # shows its analysis, and stops it
    w.go("/dashboard/experiments")
    assert page.locator("#no-experiments").count() == 1
    w.accessible("experiments empty")  # checked like every page, no screenshot of it
    w.fits_phone("experiments empty")
    exp = {"name": "browser_exp", "surface": "communities", "layer": "communities", "start": "2020-01-01T00:00:00Z",
           "primary_metric": "joins", "guardrails": ["reports"],
           "arms": [{"name": "control", "weight": 0.5}, {"name": "low_c", "weight": 0.5,
                                                         "override": {"scorer.c": 5.0}}]}
    with httpx.Client(base_url=server, timeout=60) as c:
        assert c.post("/v1/experiments", json=exp, headers=auth(ADMIN_KEY)).status_code == 201
        for i in range(2, 40):
            assert c.get("/v1/recommendations/communities", params={"user_id": f"u{i}", "k": 5}).status_code == 200
    time.sleep(0.5)  # exposures flushed
    w.go("/dashboard/experiments")
    row = page.locator('#experiments tr[data-experiment="browser_exp"]')
    assert row.locator(".status").inner_text() == "running"
    row.get_by_role("link", name="browser_exp").click()
    page.wait_for_selector("#analysis")
    exposures = sum(int(_text(page, f'#arms tr[data-arm="{a}"] td:nth-of-type(4)').replace(",", ""))
                    for a in ("control", "low_c"))
    assert exposures >= 30
    assert page.locator('#effects tr[data-metric="joins"]').count() >= 1 and page.locator("#srm").count() == 1
    w.check("experiments")
    page.get_by_role("button", name="Stop browser_exp").click()
    page.wait_for_selector("#experiment-message")
    assert _text(page, "#experiment-message") == "Stopped experiment browser_exp."
    assert _text(page, '#experiments tr[data-experiment="browser_exp"] .status') == "stopped"
    with httpx.Client(base_url=server, timeout=60) as c:
        assert c.get("/v1/experiments/browser_exp").json()["status"] == "stopped"

    # log out: the session is gone
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/dashboard/login")
    w.go("/dashboard/overview")
    assert "/dashboard/login" in page.url

    assert not w.errors, w.errors
    assert len(w.checked) == 10
    context.close()
