"""``belong serve`` (the HTTP API) and ``belong bench serve`` (throughput at a p99 budget, with a bare baseline)."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        store: str = typer.Option(None, help="Event store: a directory (embedded) or a postgresql:// URL."),
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(8000, help="TCP port."),
        redis: str = typer.Option(None, help="Online feature store URL (default: BELONG_REDIS_URL; else in-process)."),
        materialize: bool = typer.Option(False, help="Write the online features of the whole log at startup."),
        surface: list[str] = typer.Option([], "--surface", "-s", help="A catalogue surface or TOML file replacing "
                                          "the shipped declaration of its kind, e.g. communities_ranked "
                                          "(repeatable)."),
        budget_sources_ms: float = typer.Option(None, help="Candidate sources budget (BELONG_BUDGET_SOURCES_MS)."),
        budget_features_ms: float = typer.Option(None, help="Feature read budget (BELONG_BUDGET_FEATURES_MS)."),
        models: Path = typer.Option(None, "--models", help="`belong train` artifacts: the newest is loaded at start "
                                    "(BELONG_MODELS_DIR; default: build a version from the log)."),
        log_level: str = typer.Option("warning", help="uvicorn log level."),
        apps: Path = typer.Option(None, "--apps", help="Several apps on one server: a TOML of [apps.NAME] tables "
                                  "(store, redis_prefix, models, keys); instead of --store (docs/SECURITY_ACCESS.md)."),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Replicas behind the port (SO_REUSEPORT), "
                                    "fed by the event stream (needs --stream or BELONG_EVENT_STREAM)."),
        stream: str = typer.Option(None, "--stream", help="Event stream between replicas: a nats:// (JetStream) or "
                                   "redis:// (Streams) URL (BELONG_EVENT_STREAM)."),
    ) -> None:
        """Serve recommendations, events, impressions and models over HTTP (OpenAPI at /docs)."""
        from belong.errors import ValidationError
        from belong.eventlog import open_store
        from belong.serve.app import serve
        from belong.serve.settings import ServeSettings

        if (store is None) == (apps is None):
            raise ValidationError("store", "give either --store or --apps")
        if apps is not None:
            _serve_apps(apps, host, port, redis, materialize, surface, log_level)
            return
        open_store(store, create=False).close()  # a missing store is a clear error (exit 2), not a traceback
        if stream:
            os.environ["BELONG_EVENT_STREAM"] = stream
        if workers > 1:
            from belong.serve.replica import run_workers

            raise typer.Exit(run_workers(workers))
        settings = ServeSettings.from_env().with_(redis_url=redis, budget_sources_ms=budget_sources_ms,
                                                  budget_features_ms=budget_features_ms,
                                                  models_dir=str(models) if models else None).validate()
        if settings.models_dir and not Path(settings.models_dir).is_dir():
            raise ValidationError("models", f"{settings.models_dir} is not a directory (write one with belong train)")
        from belong.serve.versions import surface_overrides

        surfaces = surface_overrides(surface) or None
        typer.echo(f"belong API on http://{host}:{port} (docs: /docs) over {store}", err=True)
        serve(store, host, port, settings=settings, surfaces=surfaces, materialize=materialize, log_level=log_level)

    def _serve_apps(path: Path, host: str, port: int, redis: str | None, materialize: bool, surface: list[str],
                    log_level: str) -> None:
        import sys

        from belong.eventlog import open_store
        from belong.serve.app import run_uvicorn
        from belong.serve.apps import create_multi_app, load_apps
        from belong.serve.settings import ServeSettings
        from belong.serve.versions import surface_overrides

        settings = ServeSettings.from_env().with_(redis_url=redis)
        configs = load_apps(path, settings)
        for c in configs:
            open_store(c.store, create=False).close()  # every app's store exists (exit 2 naming it otherwise)
        app = create_multi_app(configs, surfaces=surface_overrides(surface) or None, materialize=materialize)
        typer.echo(f"belong API on http://{host}:{port} (docs: /docs), apps: {', '.join(c.name for c in configs)}",
                   err=True)
        sys.setswitchinterval(0.001)
        run_uvicorn(app, host, port, settings, log_level)

    @bench.command("serve")
    def bench_serve(
        users: int = typer.Option(100_000, help="Simulated users."),
        communities: int = typer.Option(20_000, help="Simulated communities."),
        store: Path = typer.Option(Path(".belong/bench-serve"), help="Where the simulated store is kept (reused)."),
        redis: str = typer.Option("redis://127.0.0.1:6379/0", help="Redis for the online features."),
        rates: str = typer.Option("250,500,750,1000,1250,1500,2000,2500,3000,3500,4000,5000,6000,7000,8000",
                                  help="Request rates to try, per second."),
        seconds: float = typer.Option(8.0, help="Seconds at each rate."),
        working_set: int = typer.Option(1_000, help="Distinct users the load draws from (their lists warmed first)."),
        p99_ms: float = typer.Option(25.0, help="Latency budget a rate must hold."),
        seed: int = typer.Option(0, help="Random seed of the world and the load."),
        k: int = typer.Option(20, min=1, max=100, help="Items per recommendation request."),
        json_out: bool = typer.Option(False, "--json", help="Print only the JSON result on stdout."),
        traffic: str = typer.Option("warm", help="warm: a working set of users warmed first (the cache-hit case); "
                                    "zipf: every person eligible, heavy-tailed visits, no warming, events posted "
                                    "during the load (the warm figure is reported beside)."),
        zipf_s: float = typer.Option(1.0, help="Zipf exponent of the visits (--traffic zipf)."),
        events_per_s: float = typer.Option(20.0, help="Events (joins, leaves, friend accepts) posted per second "
                                           "during the load (--traffic zipf)."),
        precompute: bool = typer.Option(True, help="--traffic zipf: the cold path reads lists stored by belong "
                                        "candidates precompute (run first; kept in Redis between runs)."),
        models: Path = typer.Option(None, "--models", help="Serve this belong train output (its newest artifact and "
                                    "the snapshot beside it) instead of STORE/models (trained when missing)."),
        precompute_scope: str = typer.Option("visitors", "--precompute-scope", help="--traffic zipf: whose lists "
                                             "are precomputed: visitors (the day's active people: everyone the load "
                                             "visits) or all (every active person; hours at 1,000,000 people)."),
    ) -> None:
        """Highest request rate held at p99 <= budget for the communities surface, next to a bare endpoint of the
        same framework returning a static payload of the same size, in the same run."""
        from belong.bench.serve import bench_serve as run
        from belong.errors import ValidationError

        try:
            rate_list = [float(r) for r in rates.split(",") if r.strip()]
        except ValueError:
            raise ValidationError("rates", f"must be comma-separated numbers, got {rates!r}") from None
        if not rate_list or any(r <= 0 for r in rate_list):
            raise ValidationError("rates", "must be positive numbers")
        if traffic not in ("warm", "zipf"):
            raise ValidationError("traffic", f"must be warm or zipf, got {traffic!r}")
        if precompute_scope not in ("visitors", "all"):
            raise ValidationError("precompute-scope", f"must be visitors or all, got {precompute_scope!r}")
        if models is not None and not models.is_dir():
            raise ValidationError("models", f"{models} is not a directory")
        if zipf_s <= 0 or events_per_s <= 0:
            raise ValidationError("zipf-s" if zipf_s <= 0 else "events-per-s", "must be > 0")
        result = run(users, communities, store, redis, sorted(rate_list), seconds, working_set, p99_ms, seed, k,
                     traffic=traffic, zipf_s=zipf_s, events_per_s=events_per_s, precompute=precompute,
                     models=models, precompute_scope=precompute_scope)
        out = orjson.dumps(result, option=orjson.OPT_INDENT_2 if not json_out else 0).decode()
        typer.echo(out)

    @bench.command("dashboard")
    def bench_dashboard(
        users: int = typer.Option(100_000, help="Simulated users."),
        communities: int = typer.Option(20_000, help="Simulated communities."),
        store: Path = typer.Option(Path(".belong/bench-serve"), help="Where the simulated store is kept (reused; "
                                   "the same world as belong bench serve)."),
        repeats: int = typer.Option(20, min=2, help="Requests per page."),
        sample_users: int = typer.Option(20, min=2, help="Distinct users for the user explorer pages."),
        seed: int = typer.Option(0, help="Random seed of the world and the sample."),
        json_out: bool = typer.Option(False, "--json", help="Print only the JSON result on stdout."),
    ) -> None:
        """Each dashboard page's answer time on the bench world, next to the same server's /healthz."""
        from belong.bench.dashboard import bench_dashboard as run

        result = run(users, communities, store, repeats, sample_users, seed)
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2 if not json_out else 0).decode())
