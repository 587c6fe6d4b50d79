"""Model configs as TOML tables (``msgspec.toml.encode`` needs ``tomli_w``, which is not a dependency).

Configs are flat structs of str/int/float/bool, so a writer for exactly those suffices; read back with ``tomllib``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {type(value).__name__} to a TOML model config")


def dumps(config: dict[str, Any], table: str | None = None) -> str:
    """A flat config dict as TOML, under ``[table]`` when given (e.g. ``models.ease``)."""
    lines = [f"[{'.'.join(_key(p) for p in table.split('.'))}]"] if table else []
    lines += [f"{_key(k)} = {_value(v)}" for k, v in config.items()]
    return "\n".join(lines) + "\n"
