"""CLI commands of this area (placeholder until implemented)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Add this module's commands to the main app and to the bench sub-app."""
