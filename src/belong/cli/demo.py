"""``belong demo``: the product demo behind ``make run`` (embedded defaults: no database or Redis needed).

It chains the real commands — nothing here is demo-only logic: simulate a small world into an embedded store,
ingest a file of new events (one of them malformed, to show the per-line error report), print the store's stats,
train the ranked surfaces (``belong train``), recommend for one simulated user on each surface, and with
``--serve`` start the API on 127.0.0.1 on the trained artifact, print ready-to-paste ``curl`` examples and run the
first of them itself (a recommendation, a join posted as an event, the same recommendation again without the
joined community). Interactive, the API then serves until Ctrl-C; without a terminal (CI, scripts) it stops after
that check, so ``make run`` always ends.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import orjson
import typer
from rich.console import Console
from rich.rule import Rule


def _sample_events(store_dir: Path, path: Path) -> None:
    """A few events for the first simulated users, as a product would send them (plus one bad row)."""
    from belong.eventlog import open_store

    with open_store(store_dir, create=False) as st:
        users = st.users().column("id").to_pylist()[:3]
        communities = st.communities().column("id").to_pylist()[:3]
    rows = [
        {"event_id": "demo-1", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": users[0],
         "target": communities[0]},
        {"event_id": "demo-2", "ts": "2026-11-01T12:05:00Z", "type": "message", "actor": users[0],
         "target": communities[0], "value": 3},
        {"event_id": "demo-3", "ts": "2026-11-01T12:06:00Z", "type": "friend_request", "actor": users[1],
         "target": users[2]},
        {"event_id": "demo-4", "ts": "2026-11-01T12:07:00Z", "type": "voice_minutes", "actor": users[1],
         "target": communities[1], "value": -5},  # rejected: value must be > 0
    ]
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows) + b"\n")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def demo(
        store: Path = typer.Option(Path(".belong/demo-store"), help="Embedded store directory (recreated)."),
        users: int = typer.Option(5_000, help="Simulated users."),
        communities: int = typer.Option(500, help="Simulated communities."),
        seed: int = typer.Option(0, help="Random seed of the simulated world."),
        serve: bool = typer.Option(False, "--serve", help="Then serve the API on 127.0.0.1 (until Ctrl-C)."),
        port: int = typer.Option(8000, help="Port of the API with --serve."),
        wait: bool = typer.Option(None, "--wait/--no-wait", help="With --serve: keep serving until Ctrl-C "
                                  "(default: only when run from a terminal)."),
    ) -> None:
        """Simulate a small world, ingest new events, print the stats and a few recommendations
        (with --serve: then start the API and print ready-to-paste curl examples)."""
        console = Console(stderr=True)

        def step(title: str, args: list[str]) -> None:
            console.print(Rule(f"[bold]{title}[/]  [dim]belong {' '.join(args)}[/]"))
            code = app(args, standalone_mode=False)
            if isinstance(code, int) and code not in (0,):
                console.print(f"[yellow]step exited with {code}[/]")

        if store.exists():
            shutil.rmtree(store)
        step("1. simulate a community world",
             ["simulate", "--users", str(users), "--communities", str(communities), "--seed", str(seed),
              "--store", str(store)])
        sample = store / "sample-events.jsonl"
        _sample_events(store, sample)
        step("2. ingest new events (one malformed row is reported, not stored)",
             ["ingest", str(sample), "--store", str(store)])
        step("3. store statistics", ["stats", "--store", str(store)])
        models = store / "models"
        step("4. train the ranked surfaces (sources + LightGBM ranker, calibrated)",
             ["train", "--store", str(store), "--out", str(models)])
        _recommend_steps(step, store, app)
        console.print(Rule("[bold green]done[/]"))
        console.print(f"store: {store}  — try: belong stats --store {store}")
        if serve:
            _serve(store, models, port, console, wait=wait if wait is not None else sys.stdin.isatty())
        else:
            console.print(f"serve it: belong serve --store {store} --models {models}  (or: make run)")


def _serve(store: Path, models: Path, port: int, console: Console, *, wait: bool) -> None:
    """Start the API on the demo store and its trained artifact (its own process, fresh API keys), print curl
    examples, run the first ones against it, then serve until Ctrl-C (``wait``) or stop."""
    import os
    import secrets
    import subprocess

    from belong.bench.serve import wait_ready
    from belong.eventlog import open_store

    key = os.environ.get("BELONG_DEMO_API_KEY") or secrets.token_urlsafe(16)
    env = {**os.environ, "BELONG_API_KEYS_WRITE": os.environ.get("BELONG_API_KEYS_WRITE", key),
           "BELONG_API_KEYS_ADMIN": os.environ.get("BELONG_API_KEYS_ADMIN", key)}
    env.pop("BELONG_REDIS_URL", None)  # embedded defaults: in-process online features
    with open_store(store, create=False) as st:
        user = st.users().column("id")[0].as_py()
        community = st.communities().column("id")[0].as_py()
    base = f"http://127.0.0.1:{port}"
    belong = str(Path(sys.executable).with_name("belong"))
    console.print(Rule(f"[bold]5. the API[/]  [dim]belong serve --store {store} --models {models} --materialize[/]"))
    proc = subprocess.Popen([belong, "serve", "--store", str(store), "--models", str(models), "--port", str(port),
                             "--materialize"], env=env)
    try:
        try:
            wait_ready(f"{base}/readyz", proc, 600)
        except RuntimeError as exc:
            console.print(f"[red]the API did not start: {exc}[/]")
            raise typer.Exit(1) from None
        event = {"events": [{"event_id": f"curl-{secrets.token_hex(4)}", "ts": "2026-11-02T10:00:00Z",
                             "type": "join", "actor": user, "target": "COMMUNITY"}]}
        event_json = orjson.dumps(event).decode().replace("COMMUNITY", community)
        console.print(f"""serving on {base} (OpenAPI: {base}/docs); API key (reads, writes, models): {key}
  AUTH='Authorization: Bearer {key}'

  curl -H "$AUTH" '{base}/v1/recommendations/communities?user_id={user}&k=10'
  curl -H "$AUTH" '{base}/v1/recommendations/people?user_id={user}&k=10&debug=true'
  curl -H "$AUTH" '{base}/v1/recommendations/content?user_id={user}&k=10'
  curl -H "$AUTH" '{base}/v1/recommendations/communities?user_id=brand-new&locale=en&age_group=adult&interests=music'
  curl -H "$AUTH" '{base}/v1/communities/{community}/similar'
  curl -X POST '{base}/v1/events' -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{event_json}'
  curl -H "$AUTH" '{base}/v1/models'
  curl '{base}/metrics'
""", soft_wrap=True, highlight=False)
        _self_check(base, user, key, console)
        if wait:
            console.print("[bold]serving until Ctrl-C[/]")
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _self_check(base: str, user: str, key: str, console: Console) -> None:
    """Run the first curl examples: recommend, post a join of the top community, recommend again."""
    import secrets

    import httpx

    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}) as c:
        before = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 5}).json()
        model = c.get("/v1/models").json()
        top = before["items"][0] if before["items"] else None
        console.print(f"model {model['active']} ({model['versions'][0].get('source')}); "
                      f"communities for {user}: " + ", ".join(f"{it['name']} ({it['score']:.3f}, {it['source']})"
                                                              for it in before["items"]))
        if top is None:
            return
        event = {"event_id": f"demo-join-{secrets.token_hex(4)}", "ts": "2026-11-02T10:00:00Z", "type": "join",
                 "actor": user, "target": top["id"]}
        posted = c.post("/v1/events", json={"events": [event]})
        after = c.get("/v1/recommendations/communities", params={"user_id": user, "k": 5}).json()
        gone = top["id"] not in {it["id"] for it in after["items"]}
        console.print(f"POST /v1/events (join {top['name']}) -> {posted.status_code}; next answer "
                      f"{'no longer shows it' if gone else 'STILL SHOWS IT'}: "
                      + ", ".join(it["name"] for it in after["items"]))


def _recommend_steps(step, store: Path, main_app: typer.Typer) -> None:
    """Recommendations for the first simulated user on each surface, when the recommend command exists."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in main_app.registered_commands}
    if "recommend" not in names:
        return
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        user = st.users().column("id")[0].as_py()
    for surface in ("communities", "people", "content"):
        step(f"recommend {surface} for user {user}",
             ["recommend", "--store", str(store), "--surface", surface, "--user", user, "--k", "10"])
