"""``belong token mint USER``: a user token for a platform's client (format: :mod:`belong.serve.tokens`)."""

from __future__ import annotations

import os
import time

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    token = typer.Typer(help="User tokens: let one user's client read that user's recommendations.",
                        no_args_is_help=True)
    app.add_typer(token, name="token")

    @token.command("mint")
    def mint_cmd(
        user: str = typer.Argument(..., help="The user id the token speaks for."),
        ttl: int = typer.Option(3600, min=1, max=30 * 86400, help="Seconds until it expires."),
        app_name: str = typer.Option(None, "--app", help="The app (default: BELONG_APP, else 'default')."),
    ) -> None:
        """Print a token signed with BELONG_TOKEN_SECRET (the server's secret; set it in the environment)."""
        from belong.domain import parse_id
        from belong.errors import ValidationError
        from belong.serve.tokens import MIN_SECRET_LEN, mint

        secret = os.environ.get("BELONG_TOKEN_SECRET") or ""
        if len(secret) < MIN_SECRET_LEN:
            raise ValidationError("BELONG_TOKEN_SECRET", f"must be set to the server's secret (at least "
                                  f"{MIN_SECRET_LEN} characters)")
        name = app_name or os.environ.get("BELONG_APP") or "default"
        typer.echo(mint(secret, name, parse_id(user, "user"), int(time.time()) + ttl))
