"""``belong demo``: the main job behind ``make run`` (embedded defaults, no server needed).

It chains the real commands — nothing here is demo-only logic: simulate a small world into an embedded store,
ingest a file of new events (one of them malformed, to show the per-line error report), print the store's stats,
then recommend for one simulated user on each surface.
"""

from __future__ import annotations

import shutil
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
        {"event_id": "demo-1", "ts": "2026-11-01T12:00:00Z", "type": "join", "actor": users[0], "target": communities[0]},
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
    ) -> None:
        """Simulate a small world, ingest new events, print the stats and a few recommendations
        (with --serve: then start the API and print ready-to-paste curl examples)."""
        from belong.cli import app as main_app

        console = Console(stderr=True)

        def step(title: str, args: list[str]) -> None:
            console.print(Rule(f"[bold]{title}[/]  [dim]belong {' '.join(args)}[/]"))
            code = main_app(args, standalone_mode=False)
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
        _recommend_steps(step, store, main_app)
        console.print(Rule("[bold green]done[/]"))
        console.print(f"store: {store}  — try: belong stats --store {store}")
        if serve:
            _serve(store, port, console)
        else:
            console.print(f"serve it: belong demo --serve --store {store}  (or: make serve)")


def _serve(store: Path, port: int, console: Console) -> None:
    """Start the API on the demo store with fresh API keys, after printing curl examples that use them."""
    import os
    import secrets

    from belong.eventlog import open_store
    from belong.serve.app import serve as run_server

    key = os.environ.get("BELONG_DEMO_API_KEY") or secrets.token_urlsafe(16)
    os.environ.setdefault("BELONG_API_KEYS_WRITE", key)
    os.environ.setdefault("BELONG_API_KEYS_ADMIN", key)
    with open_store(store, create=False) as st:
        user = st.users().column("id")[0].as_py()
        community = st.communities().column("id")[0].as_py()
    base = f"http://127.0.0.1:{port}"
    event = orjson.dumps({"events": [{"event_id": f"curl-{secrets.token_hex(4)}", "ts": "2026-11-02T10:00:00Z",
                                      "type": "join", "actor": user, "target": community}]}).decode()
    console.print(Rule("[bold]API[/]"))
    console.print(f"""starting on {base} (OpenAPI: {base}/docs); API key for write/admin routes: {key}

  curl '{base}/v1/recommendations/communities?user_id={user}&k=10'
  curl '{base}/v1/recommendations/people?user_id={user}&k=10&debug=true'
  curl '{base}/v1/recommendations/content?user_id={user}&k=10'
  curl '{base}/v1/recommendations/communities?user_id=brand-new&locale=en&age_group=adult&interests=gaming,music'
  curl '{base}/v1/communities/{community}/similar'
  curl -X POST '{base}/v1/events' -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{event}'
  curl '{base}/v1/models'
  curl '{base}/metrics'
""", soft_wrap=True, highlight=False)
    run_server(str(store), port=port, materialize=True, log_level="warning")


def _recommend_steps(step, store: Path, main_app: typer.Typer) -> None:
    """Recommendations for the first simulated user on each surface, when the recommend command exists."""
    names = {c.name or (c.callback.__name__ if c.callback else "") for c in main_app.registered_commands}
    if "recommend" not in names:
        return
    from belong.eventlog import open_store

    with open_store(store, create=False) as st:
        user = st.users().column("id")[0].as_py()
    for surface in ("communities", "people", "content"):
        step(f"4. {surface} for user {user}",
             ["recommend", "--store", str(store), "--surface", surface, "--user", user, "--k", "10"])
