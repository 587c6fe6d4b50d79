"""Loop scenarios as TOML (``src/belong/loop/scenarios/*.toml``): the world, the run and the arms. A scenario
chooses arms, sizes and seeds; it never changes the response model (docs/LOOP.md)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.experiments.assign import bucket
from belong.experiments.declaration import BUCKETS

UNITS = ("user", "cluster")
MODES = ("inprocess", "http", "direct")


@dataclass(frozen=True)
class Arm:
    name: str
    surface: str  # a catalogue surface name or a TOML path (relative paths: next to the scenario file)
    weight: float = 0.5


@dataclass(frozen=True)
class Scenario:
    name: str
    arms: tuple[Arm, ...]
    control: str
    users: int = 2000
    communities: int = 200
    seed: int = 0
    days: int = 7
    retrain_days: int = 7
    k: int = 10
    unit: str = "user"
    units: tuple[str, ...] = ()  # several: the same experiment run once per unit of randomisation (scenario c)
    truth_sample: int = 0  # people whose expected outcome under every arm is computed each day (0: everyone)
    mode: str = "inprocess"
    description: str = ""
    base_dir: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **kw: Any) -> Scenario:
        kw = {k: v for k, v in kw.items() if v is not None}
        out = replace(self, **kw)
        _validate(out)
        return out


def names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("belong.loop.scenarios").iterdir() if p.name.endswith(".toml"))


def _int(d: dict[str, Any], key: str, default: int, lo: int, where: str) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValidationError(f"{where}.{key}", f"must be an integer >= {lo}, got {v!r}")
    return v


def _validate(sc: Scenario) -> None:
    if sc.unit not in UNITS:
        raise ValidationError("run.unit", f"must be one of {', '.join(UNITS)}, got {sc.unit!r}")
    for u in sc.units:
        if u not in UNITS:
            raise ValidationError("run.units", f"each must be one of {', '.join(UNITS)}, got {u!r}")
    if sc.mode not in MODES:
        raise ValidationError("run.mode", f"must be one of {', '.join(MODES)}, got {sc.mode!r}")
    if sc.users < 10 or sc.communities < 2 or sc.days < 1 or sc.retrain_days < 1 or not 1 <= sc.k <= 100:
        raise ValidationError("world", "needs users >= 10, communities >= 2, days >= 1, retrain_days >= 1, "
                              "1 <= k <= 100")


def _units(run: dict[str, Any]) -> tuple[str, ...]:
    v = run.get("units", [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValidationError("run.units", f"must be a list of unit names, got {v!r}")
    return tuple(v)


def parse(text: str, base_dir: str = "", origin: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValidationError("scenario", f"{origin} is not valid TOML: {e}") from None
    world, run = data.get("world", {}), data.get("run", {})
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, list) or len(arms_raw) < 2:
        raise ValidationError("arms", "a scenario needs at least two [[arms]]")
    arms = []
    for i, a in enumerate(arms_raw):
        if not isinstance(a, dict) or not isinstance(a.get("name"), str) or not isinstance(a.get("surface"), str):
            raise ValidationError(f"arms[{i}]", "needs a name and a surface (strings)")
        w = a.get("weight", 1.0 / len(arms_raw))
        if not isinstance(w, int | float) or w <= 0:
            raise ValidationError(f"arms[{i}].weight", f"must be a positive number, got {w!r}")
        arms.append(Arm(a["name"], a["surface"], float(w)))
    names_ = [a.name for a in arms]
    if len(set(names_)) != len(names_):
        raise ValidationError("arms", f"arm names must be unique, got {names_}")
    total = sum(a.weight for a in arms)
    arms = [replace(a, weight=a.weight / total) for a in arms]
    control = data.get("control", arms[0].name)
    if control not in names_:
        raise ValidationError("control", f"must name an arm ({', '.join(names_)}), got {control!r}")
    sc = Scenario(
        name=str(data.get("name", origin)), arms=tuple(arms), control=control,
        users=_int(world, "users", 2000, 10, "world"), communities=_int(world, "communities", 200, 2, "world"),
        seed=_int(world, "seed", 0, 0, "world"), days=_int(run, "days", 7, 1, "run"),
        retrain_days=_int(run, "retrain_days", 7, 1, "run"), k=_int(run, "k", 10, 1, "run"),
        unit=str(run.get("unit", "user")), units=_units(run), truth_sample=_int(run, "truth_sample", 0, 0, "run"),
        mode=str(run.get("mode", "inprocess")), description=str(data.get("description", "")), base_dir=base_dir,
        extra={k: v for k, v in data.items() if k not in {"name", "world", "run", "arms", "control", "description"}},
    )
    _validate(sc)
    return sc


def load(spec: str | Path) -> Scenario:
    """A shipped scenario by name, or a TOML file."""
    text = str(spec)
    if not text.endswith(".toml") and "/" not in text and not Path(text).is_file():
        res = resources.files("belong.loop.scenarios").joinpath(f"{text}.toml")
        if not res.is_file():
            raise ValidationError("scenario", f"unknown scenario {text!r}; shipped: {', '.join(names())} "
                                  "(or give a TOML file path)")
        with resources.as_file(res) as p:
            return parse(p.read_text("utf-8"), str(p.parent), text)
    path = Path(text)
    if not path.is_file():
        raise ValidationError("scenario", f"no such file: {path}")
    return parse(path.read_text("utf-8"), str(path.parent), path.stem)


def surface_spec(sc: Scenario, arm: Arm) -> str:
    """The arm's surface: a catalogue name as is, a relative TOML path resolved next to the scenario."""
    s = arm.surface
    if (s.endswith(".toml") or "/" in s) and not Path(s).is_absolute() and sc.base_dir:
        return str(Path(sc.base_dir) / s)
    return s


def assign(sc: Scenario, units: list[str]) -> np.ndarray:
    """Arm index of each unit: the experiments' sha256 bucket of (scenario name, unit), by cumulative weight."""
    bounds = np.round(np.cumsum([a.weight for a in sc.arms]) * BUCKETS).astype(int)
    bounds[-1] = BUCKETS
    b = np.array([bucket(sc.name, u) for u in units])
    return np.searchsorted(bounds, b, side="right")
