"""Model rows: the features of one (user, candidate) on a surface, from entity rows plus request-time values.

:func:`candidate_features` is used by training-set building (entity rows from :class:`FeatureState` at the label's
time) and by :func:`hydrate` online (entity rows from the online store, one round trip), so both produce the same
columns from the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from belong.domain import Surface, parse_enum
from belong.errors import ValidationError
from belong.features.online import OnlineFeatureStore
from belong.features.pairs import membership_pair, user_community, user_user
from belong.features.registry import SURFACE_FEATURES, get_spec

#: the stored entity a surface's candidates are.
CANDIDATE_ENTITY: dict[Surface, str] = {
    Surface.COMMUNITIES: "community",
    Surface.PEOPLE: "user",
    Surface.CONTENT: "content",
}


def check_request_features(values: Mapping[str, Any], surface: Surface) -> None:
    """Request-time values must be declared request-time features of the surface's pair entity."""
    for name in values:
        spec = get_spec(name)
        if not spec.request_time:
            raise ValidationError("feature", f"{name!r} is computed from the log, not passed at request time")
        if name == "uc_text_similarity" and surface is not Surface.COMMUNITIES:
            raise ValidationError("feature", f"{name!r} applies to the communities surface only")


def request_columns(surface: Surface, extra: Sequence[str] = ()) -> list[str]:
    """Request-time columns of a surface: its declared ones plus the given source columns, in order."""
    base = ["uc_text_similarity"] if surface is Surface.COMMUNITIES else []
    return base + [c for c in extra if c not in base]


def source_values(hits: Mapping[str, tuple[int, float]]) -> dict[str, Any]:
    """Request-time values of one candidate from its source hits ``{source: (rank, score)}``: the columns
    ``src_<source>_rank`` and ``src_<source>_score`` (sources that did not propose it are left out: missing)."""
    out: dict[str, Any] = {}
    for source, (rank, score) in hits.items():
        out[get_spec(f"src_{source}_rank").name] = int(rank)
        out[get_spec(f"src_{source}_score").name] = float(score)
    return out


def _columns(surface: Surface) -> tuple[tuple[str, int, str], ...]:
    """Each column of :data:`SURFACE_FEATURES` of a surface as (column, where, key): where 0 is the user's row, 1
    the candidate's row, 2 the pair features; key is the name in that row (``cand_<name>`` reads ``<name>``)."""
    cand_entity = CANDIDATE_ENTITY[surface]
    out = []
    for name in SURFACE_FEATURES[surface]:
        if surface is Surface.PEOPLE and name.startswith("cand_"):
            out.append((name, 1, name[len("cand_"):]))
            continue
        entity = get_spec(name).entity
        out.append((name, 0 if entity == "user" else 1 if entity == cand_entity else 2, name))
    return tuple(out)


_COLUMNS: dict[Surface, tuple[tuple[str, int, str], ...]] = {s: _columns(s) for s in SURFACE_FEATURES}
#: the same without the user's own columns (identical in every row of a request)
_ITEM_COLUMNS: dict[Surface, tuple[tuple[str, int, str], ...]] = {
    s: tuple(c for c in cols if c[1] != 0) for s, cols in _COLUMNS.items()
}

_REQUEST_BASE: dict[Surface, tuple[str, ...]] = {s: tuple(request_columns(s)) for s in SURFACE_FEATURES}
_REQUEST_SPECS = {n: get_spec(n) for names in _REQUEST_BASE.values() for n in names}


def candidate_features(
    surface: Surface,
    user_id: str,
    user_row: Mapping[str, Any],
    cand_id: str,
    cand_row: Mapping[str, Any],
    request: Mapping[str, Any] | None = None,
    request_names: Sequence[str] = (),
    *,
    user_columns: bool = True,
) -> dict[str, Any]:
    """Model inputs of one candidate: :data:`SURFACE_FEATURES` of the surface, then request-time columns.
    ``user_columns=False`` leaves out the user's own features (the same in every row; serving sends them once)."""
    if surface is Surface.COMMUNITIES:
        pair: Mapping[str, Any] = user_community(user_row, cand_id, cand_row)
    elif surface is Surface.PEOPLE:
        pair = user_user(user_id, user_row, cand_id, cand_row)
    else:
        pair = membership_pair(user_row, cand_row["content_community_id"])
    rows = (user_row, cand_row, pair)
    out = {name: rows[where][key] for name, where, key in (_COLUMNS if user_columns else _ITEM_COLUMNS)[surface]}
    if request or request_names:
        for name in request_columns(surface, request_names):
            out[name] = request[name] if request and name in request else get_spec(name).default_value()
    else:  # no request-time values given: the surface's declared request-time columns at their defaults
        for name in _REQUEST_BASE[surface]:
            out[name] = _REQUEST_SPECS[name].default_value()
    return out


def hydrate(
    store: OnlineFeatureStore,
    surface: Surface | str,
    user_id: str,
    candidates: Sequence[str],
    request: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Model inputs for each candidate of one request, reading the user and all candidates in ONE store call.

    ``request`` optionally gives per-candidate request-time values (``src_<source>_score``, ...), aligned with
    ``candidates``. Unknown entities read as the declared defaults.
    """
    surface = parse_enum(surface, Surface, "surface")
    if request is not None and len(request) != len(candidates):
        raise ValidationError("request", f"has {len(request)} entries for {len(candidates)} candidates")
    names: list[str] = []
    for values in request or ():
        check_request_features(values, surface)
        names.extend(n for n in values if n not in names)
    entity = CANDIDATE_ENTITY[surface]
    rows = store.read_many([("user", user_id)] + [(entity, c) for c in candidates])
    user_row = rows[0]
    return [
        candidate_features(surface, user_id, user_row, c, row, None if request is None else request[i], names)
        for i, (c, row) in enumerate(zip(candidates, rows[1:], strict=True))
    ]
