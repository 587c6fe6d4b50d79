"""``belong bench models``: fit time and peak memory of every item model on a large synthetic catalogue."""

from __future__ import annotations

import orjson
import typer
from rich.console import Console

from belong.errors import ValidationError

err = Console(stderr=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("models")
    def bench_models(
        users: int = typer.Option(100_000, "--users", help="Synthetic users."),
        communities: int = typer.Option(50_000, "--communities", help="Synthetic communities (the catalogue)."),
        per_user: float = typer.Option(12.0, "--per-user", help="Mean memberships per user."),
        models: str = typer.Option("", "--models", help="Comma-separated model names (default: every item model "
                                   "a surface serves from)."),
        seed: int = typer.Option(0, "--seed"),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    ) -> None:
        """Per model: fit seconds, peak MiB allocated while fitting and scoring; most-popular as the baseline."""
        from belong.bench.models import DEFAULT_MODELS
        from belong.bench.models import bench_models as run
        from belong.models import registry

        for field, value in (("users", users), ("communities", communities)):
            if value < 2:
                raise ValidationError(field, f"must be at least 2, got {value}")
        if per_user <= 0:
            raise ValidationError("per_user", f"must be > 0, got {per_user}")
        chosen = None
        if models.strip():
            names = [registry.resolve(n.strip()) for n in models.split(",") if n.strip()]
            chosen = {n: DEFAULT_MODELS.get(n, {}) for n in names}
        result = run(users, communities, per_user=per_user, models=chosen, seed=seed, console=err)
        if as_json:
            typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
        else:
            Console().print_json(orjson.dumps(result).decode())
