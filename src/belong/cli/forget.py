"""``belong forget USER --store S [--redis URL] [--models DIR] [--json]``: forget a user for good — a durable
tombstone, their events and profile out of the log, their feature row out of Redis — and list the trained artifacts
that still hold them (train anew, then delete those). The platform's account-deletion hook without a server; with
one running, call ``DELETE /v1/users/{id}`` instead (it also masks the user in the live models at once)."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer
from rich.console import Console

from belong.settings import get_settings

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command("forget")
    def forget_cmd(
        user: str = typer.Argument(..., help="The user id to forget."),
        store: str = typer.Option(None, "--store", help="Store: a directory or a postgresql:// URL (BELONG_STORE)."),
        redis: str = typer.Option(None, "--redis", help="Redis URL of the online feature store (BELONG_REDIS_URL)."),
        prefix: str = typer.Option("belong:features:", "--prefix", help="Redis key prefix of the feature rows."),
        models: Path = typer.Option(None, "--models", help="Models directory to check for artifacts still holding "
                                    "the user (default: the store's own)."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as one JSON object on stdout."),
    ) -> None:
        """Forget a user everywhere the store, the feature store and new trainings reach."""
        from belong.domain import parse_id
        from belong.eventlog import open_store
        from belong.features.online import open_feature_store
        from belong.training.forget import forget_user_data
        from belong.training.locate import default_models_dir

        settings = get_settings()
        user_id = parse_id(user, "user")
        spec = store or settings.store
        redis_url = redis if redis is not None else settings.redis_url
        features = open_feature_store(redis_url, prefix=prefix) if redis_url else None
        try:
            with open_store(spec, create=False) as st:
                out = forget_user_data(st, features, user_id, models or default_models_dir(spec))
        finally:
            if features is not None:
                features.close()
        if as_json:
            typer.echo(orjson.dumps(out).decode())
            return
        err.print(f"[bold]forgot[/] the user: {out['events_deleted']} events, {out['user_rows_deleted']} profile "
                  f"row, {out['feature_rows_deleted']} feature row deleted"
                  + (" (already forgotten before)" if out["already_forgotten"] else ""))
        for version in out["artifacts_to_retrain"]:
            err.print(f"  artifact {version} still holds them: run `belong train`, then delete it")
