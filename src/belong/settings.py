"""Deployment settings, read once from environment variables (documented defaults below).

| variable | default | meaning |
|---|---|---|
| BELONG_STORE | .belong/store | default store: a directory (embedded) or a postgresql:// URL |
| BELONG_DATA_DIR | ../shared/data | where public datasets live, one folder each with SOURCE.md |
| BELONG_REDIS_URL | (none) | Redis for the online feature store / caches; embedded in-process when unset |
| BELONG_SEED | 0 | default random seed for simulations, splits and models |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    store: str
    data_dir: Path
    redis_url: str | None
    seed: int


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    env = os.environ
    return Settings(
        store=env.get("BELONG_STORE", ".belong/store"),
        data_dir=Path(env.get("BELONG_DATA_DIR", "../shared/data")),
        redis_url=env.get("BELONG_REDIS_URL") or None,
        seed=int(env.get("BELONG_SEED", "0")),
    )
