"""The one TOML writer of belong: surface declarations and model configs (tomllib only reads; msgspec.toml needs
tomli_w, which is not a dependency).

Supports what component configs hold: strings, booleans, integers, floats, lists of those, nested tables
(dicts) and arrays of tables (lists of dicts).
"""

from __future__ import annotations

import json
import math
from typing import Any


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_scalar(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def _table(data: dict[str, Any], prefix: str, out: list[str]) -> None:
    for k, v in data.items():
        if v is None:
            continue
        if not isinstance(v, dict) and not _is_table_array(v):
            out.append(f"{_key(k)} = {_scalar(v)}")
    for k, v in data.items():
        path = f"{prefix}.{_key(k)}" if prefix else _key(k)
        if isinstance(v, dict):
            out.append("")
            out.append(f"[{path}]")
            _table(v, path, out)
        elif _is_table_array(v):
            for row in v:
                out.append("")
                out.append(f"[[{path}]]")
                _table(row, path, out)


def dumps(data: dict[str, Any]) -> str:
    """TOML text of ``data`` (None values are left out, as TOML has no null)."""
    out: list[str] = []
    _table(data, "", out)
    return "\n".join(out).lstrip("\n") + "\n"
