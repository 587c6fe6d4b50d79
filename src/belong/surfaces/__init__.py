"""The surface catalogue: every shipped surface declaration, one loader, addressable by name or by file path.

=======================  ==============  =============================================================
name                     kind            what
=======================  ==============  =============================================================
``communities``          communities     every communities source, safety rules, the rank blend
``communities_ranked``   communities     the same sources and rules, the learned LightGBM ranker
``people``               people          people you may know: graph, co-membership and interest sources
``people_ranked``        people          the same sources and rules, the learned p(friendship forms) ranker
``people_two_sided``     people          the people sources and rules, p(request) x p(accept | request)
``people_embedding``     people          ``people`` + iALS embeddings of the friend graph (dense organic graphs)
``content``              content         content of your communities, what friends engage with, trending; the
                                         learned p(engage) ranker (graded labels, 300 lists)
``content_blend``        content         the same sources and rules, the rank blend (the content baseline)
``content_ranked``       content         the same, the ranker on 2,000 lists (better; a slower fit)
=======================  ==============  =============================================================

:func:`load` takes a catalogue name or the path of a TOML file (anything ending in ``.toml``, or an existing file)
and returns an unfitted :class:`~belong.pipeline.Pipeline`. Importing this module registers every shipped
component type (sources, ranking), so declarations naming them parse.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import belong.ranking  # noqa: F401  (registers lgbm_ranker, mmr, safety_rules, pending, strangers)
import belong.sources  # noqa: F401  (registers every candidate source)
from belong.errors import ValidationError
from belong.pipeline import Pipeline


def names() -> list[str]:
    """The shipped surfaces, by name."""
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def is_path(spec: str) -> bool:
    """Whether ``spec`` names a file rather than a catalogue entry."""
    return spec.endswith(".toml") or "/" in spec or Path(spec).is_file()


def declaration(spec: str | Path, field: str = "surface") -> tuple[str, dict[str, Any]]:
    """``(name, parsed declaration)`` of a catalogue name or a TOML file path; errors name ``field``."""
    text = str(spec).strip()
    if not is_path(text):
        res = resources.files(__name__).joinpath(f"{text}.toml")
        if not res.is_file():
            raise ValidationError(field, f"unknown surface {text!r}; the catalogue has {', '.join(names())} "
                                  "(or give a TOML file path)")
        source, name = res.read_text("utf-8"), text
    else:
        path = Path(text)
        if not path.is_file():
            raise ValidationError(field, f"no surface file {text!r} (the catalogue has {', '.join(names())})")
        source, name = path.read_text("utf-8"), path.stem
    try:
        return name, tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationError(field, f"{text} is not valid TOML: {exc}") from None


def load(spec: str | Path, field: str = "surface") -> Pipeline:
    """An unfitted pipeline of a catalogue name (``communities_ranked``) or a TOML file path."""
    name, data = declaration(spec, field)
    return Pipeline.from_dict(data, name)


def from_dict(data: dict[str, Any], name: str = "") -> Pipeline:
    """An unfitted pipeline from a parsed declaration (e.g. an artifact's manifest), every shipped type known."""
    return Pipeline.from_dict(data, name)
