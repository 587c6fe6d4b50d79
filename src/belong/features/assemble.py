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
from belong.features.registry import SURFACE_FEATURES, get_spec, specs_for

#: the stored entity a surface's candidates are.
CANDIDATE_ENTITY: dict[Surface, str] = {
    Surface.COMMUNITIES: "community",
    Surface.PEOPLE: "user",
    Surface.CONTENT: "content",
}
_USER_INPUTS = tuple(s.name for s in specs_for("user", model_input_only=True))


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


def candidate_features(
    surface: Surface,
    user_id: str,
    user_row: Mapping[str, Any],
    cand_id: str,
    cand_row: Mapping[str, Any],
    request: Mapping[str, Any] | None = None,
    request_names: Sequence[str] = (),
) -> dict[str, Any]:
    """Model inputs of one candidate: :data:`SURFACE_FEATURES` of the surface, then request-time columns."""
    values = {n: user_row[n] for n in _USER_INPUTS}
    if surface is Surface.COMMUNITIES:
        values.update(cand_row)
        values.update(user_community(user_row, cand_id, cand_row))
    elif surface is Surface.PEOPLE:
        values.update((f"cand_{n}", cand_row[n]) for n in _USER_INPUTS)
        values.update(user_user(user_id, user_row, cand_id, cand_row))
    else:
        values.update(cand_row)
        values.update(membership_pair(user_row, cand_row["content_community_id"]))
    out = {n: values[n] for n in SURFACE_FEATURES[surface]}
    request = request or {}
    for name in request_columns(surface, request_names):
        out[name] = request.get(name, get_spec(name).default_value())
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
