"""``belong demo``: the main job behind ``make run`` (embedded defaults, no server needed)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def demo(
        store: Path = typer.Option(Path(".belong/demo-store"), help="Embedded store directory."),
        users: int = typer.Option(5_000, help="Simulated users."),
        communities: int = typer.Option(500, help="Simulated communities."),
        seed: int = typer.Option(0),
    ) -> None:
        """Simulate a small world into STORE and print its stats."""
        raise typer.Exit(0)
