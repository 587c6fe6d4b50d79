"""Model configs as TOML tables, written by :mod:`belong.toml_writer` and read back with ``tomllib``."""

from __future__ import annotations

from typing import Any

from belong import toml_writer


def dumps(config: dict[str, Any], table: str | None = None) -> str:
    """A flat config dict as TOML, under ``[table]`` when given (e.g. ``models.ease``)."""
    data: dict[str, Any] = dict(config)
    for part in reversed(table.split(".") if table else []):
        data = {part: data}
    return toml_writer.dumps(data)
