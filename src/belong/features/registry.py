"""Feature declarations: every feature is declared once here, with its entity, type, default and freshness.

Entities and where a feature's value comes from:

* ``user``, ``community``, ``content`` — entity-level features, computed by :class:`belong.features.state.FeatureState`
  from the event log *as of* a timestamp (only events strictly before it count) and the entity catalogue. They are
  materialised into the online store (``belong features materialize``) and computed on the fly for training rows.
* ``user_community``, ``user_user`` — pair features. They are **not materialised per pair** (that would be
  users x candidates rows): :mod:`belong.features.pairs` computes them on request from the two entity rows, using
  the *support* features (``model_input=False``: membership lists, friend degrees, friends' communities, ...) stored
  with each entity. The same functions run for training rows and online, so offline and online values agree.
* ``request_time=True`` — values only the serving pipeline knows for one request (each candidate source's score
  and rank, text similarity). They pass through from the candidates table (training) or the pipeline (online).
  Source features are declared by a name pattern: ``src_<source>_score`` and ``src_<source>_rank`` for any source
  name made of lowercase letters, digits and underscores.

``freshness_s`` is how old a materialised value may be before it should be recomputed; readers compare it with the
``materialized_at`` timestamp the online store returns for each entity.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from belong.domain import Surface
from belong.errors import ValidationError

Entity = Literal["user", "community", "content", "user_community", "user_user"]
DType = Literal["float", "int", "str", "list", "map"]

ENTITIES: tuple[Entity, ...] = ("user", "community", "content", "user_community", "user_user")
#: entities whose rows are materialised in the online store.
STORED_ENTITIES: tuple[Entity, ...] = ("user", "community", "content")

HOUR_S = 3600
DAY_S = 86_400


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One declared feature. ``default`` is the value served when the entity (or the value) is missing."""

    name: str
    entity: Entity
    dtype: DType
    default: Any
    freshness_s: int
    description: str
    #: False for support values (lists, maps) that pair features are computed from; they are not model inputs.
    model_input: bool = True
    #: True when the value is known only at request time (from the candidate sources), never materialised.
    request_time: bool = False

    def default_value(self) -> Any:
        """A fresh copy of the default (lists and maps are mutable)."""
        if isinstance(self.default, list | dict):
            return type(self.default)(self.default)
        return self.default


def _f(
    name: str, entity: Entity, dtype: DType, default: Any, freshness_s: int, description: str, **kw: Any
) -> FeatureSpec:
    return FeatureSpec(name, entity, dtype, default, freshness_s, description, **kw)


DECLARED: tuple[FeatureSpec, ...] = (
    # ---------------------------------------------------------------------------------------------- user
    _f("user_activity_1d", "user", "int", 0, HOUR_S,
       "activity events (message, reaction, voice_minutes, view, click) by the user in [t-1d, t)"),
    _f("user_activity_7d", "user", "int", 0, 6 * HOUR_S, "activity events by the user in [t-7d, t)"),
    _f("user_activity_28d", "user", "int", 0, DAY_S, "activity events by the user in [t-28d, t)"),
    _f("user_communities_joined", "user", "int", 0, HOUR_S, "communities the user is a member of at t"),
    _f("user_friend_count", "user", "int", 0, HOUR_S, "accepted, not removed friendships at t"),
    _f("user_age_group", "user", "str", "unknown", DAY_S, "teen / adult / unknown (catalogue)"),
    _f("user_locale", "user", "str", "und", DAY_S, "BCP-47 language tag (catalogue)"),
    _f("user_account_age_days", "user", "float", 0.0, DAY_S, "days since the account was created, at t"),
    _f("user_interests", "user", "list", [], DAY_S, "declared interest tags (catalogue)"),
    _f("user_community_ids", "user", "list", [], HOUR_S, "ids of the user's communities at t",
       model_input=False),
    _f("user_friend_degrees", "user", "map", {}, HOUR_S, "friend id -> that friend's friend count at t",
       model_input=False),
    _f("user_friend_communities", "user", "map", {}, HOUR_S,
       "community id -> how many of the user's friends are members at t", model_input=False),
    _f("user_interactions", "user", "map", {}, HOUR_S,
       "other user id -> user-to-user events between the two before t (requests, accepts, clicks, ...)",
       model_input=False),
    _f("user_blocked_users", "user", "list", [], HOUR_S, "users this user blocked or reported before t",
       model_input=False),
    _f("user_blocked_communities", "user", "list", [], HOUR_S,
       "communities this user blocked or reported before t", model_input=False),
    # ---------------------------------------------------------------------------------------------- community
    _f("community_size", "community", "int", 0, HOUR_S, "members at t"),
    _f("community_new_members_7d", "community", "int", 0, HOUR_S, "size(t) - size(t-7d)"),
    _f("community_growth_7d", "community", "float", 0.0, HOUR_S,
       "(size(t) - size(t-7d)) / max(size(t-7d), 1)"),
    _f("community_activity_7d", "community", "int", 0, 6 * HOUR_S,
       "activity events on the community or its content in [t-7d, t)"),
    _f("community_activity_per_member_7d", "community", "float", 0.0, 6 * HOUR_S,
       "community_activity_7d / max(community_size, 1)"),
    _f("community_locale", "community", "str", "und", DAY_S, "language of the community (catalogue)"),
    _f("community_tags", "community", "list", [], DAY_S, "topic tags (catalogue)"),
    _f("community_age_restricted", "community", "int", 0, DAY_S, "1 when adults only (catalogue)"),
    _f("community_age_days", "community", "float", 0.0, DAY_S, "days since the community was created, at t"),
    _f("community_neighbors", "community", "map", {}, 6 * HOUR_S,
       "top-50 co-membership neighbours: other community id -> Jaccard of the member sets at t",
       model_input=False),
    # ---------------------------------------------------------------------------------------------- content
    _f("content_engagement_1d", "content", "int", 0, HOUR_S,
       "engagement events (message, reaction, view, click, voice_minutes) on the item in [t-1d, t)"),
    _f("content_engagement_7d", "content", "int", 0, 6 * HOUR_S, "engagement events on the item in [t-7d, t)"),
    _f("content_age_hours", "content", "float", 0.0, HOUR_S, "hours since the item was created, at t"),
    _f("content_kind", "content", "str", "", DAY_S, "channel / post / event (catalogue)"),
    _f("content_community_id", "content", "str", "", DAY_S, "the community the item belongs to (catalogue)",
       model_input=False),
    # ---------------------------------------------------------------------------------------------- user x community
    _f("uc_is_member", "user_community", "int", 0, HOUR_S, "1 when the user is a member of the community"),
    _f("uc_friends_inside", "user_community", "int", 0, HOUR_S, "the user's friends who are members"),
    _f("uc_co_membership", "user_community", "float", 0.0, 6 * HOUR_S,
       "sum over the user's communities of their member-set Jaccard with the candidate (top-50 neighbours)"),
    _f("uc_tag_overlap", "user_community", "float", 0.0, DAY_S,
       "Jaccard of the user's interests and the community's tags"),
    _f("uc_locale_match", "user_community", "int", 0, DAY_S, "1 when user and community share a language"),
    _f("uc_blocked", "user_community", "int", 0, HOUR_S, "1 when the user blocked or reported the community"),
    _f("uc_text_similarity", "user_community", "float", None, 0,
       "cosine of the user's and the community's text embeddings (from the text source)", request_time=True),
    # ---------------------------------------------------------------------------------------------- user x user
    _f("uu_mutual_friends", "user_user", "int", 0, HOUR_S, "friends the two users have in common"),
    _f("uu_adamic_adar", "user_user", "float", 0.0, HOUR_S,
       "sum over common friends w of 1 / log(friend count of w)"),
    _f("uu_shared_communities", "user_user", "int", 0, HOUR_S, "communities both users are members of"),
    _f("uu_past_interactions", "user_user", "int", 0, HOUR_S, "user-to-user events between the two before t"),
    _f("uu_are_friends", "user_user", "int", 0, HOUR_S, "1 when they are already friends"),
    _f("uu_blocked", "user_user", "int", 0, HOUR_S, "1 when either blocked or reported the other"),
)

_BY_NAME: dict[str, FeatureSpec] = {s.name: s for s in DECLARED}
_SOURCE_RE = re.compile(r"^src_([a-z0-9_]+?)_(score|rank)$")

#: the computed features a training row / a hydrated candidate carries per surface, in column order: user
#: features, the candidate's entity features, pair features. Request-time columns follow (see
#: :func:`belong.features.assemble.request_columns`).
SURFACE_FEATURES: dict[Surface, tuple[str, ...]] = {}


def source_feature(name: str) -> FeatureSpec | None:
    """The request-time spec of ``src_<source>_score`` / ``src_<source>_rank``, or None if not that pattern."""
    m = _SOURCE_RE.match(name)
    if not m:
        return None
    source, what = m.groups()
    if what == "score":
        return FeatureSpec(name, "user_community", "float", None, 0,
                           f"score the {source} candidate source gave (missing: not produced by it)",
                           request_time=True)
    return FeatureSpec(name, "user_community", "int", None, 0,
                       f"0-based rank of the candidate in the {source} source's list", request_time=True)


def get_spec(name: str) -> FeatureSpec:
    """The declaration of ``name``; raises ValidationError naming the feature when it is not declared."""
    spec = _BY_NAME.get(name) if isinstance(name, str) else None
    if spec is None and isinstance(name, str):
        spec = source_feature(name)
    if spec is None:
        raise ValidationError(
            "feature", f"unknown feature {name!r}; declared features are listed by `belong features list`"
        )
    return spec


def specs_for(entity: Entity, *, model_input_only: bool = False) -> tuple[FeatureSpec, ...]:
    """Declared (non-pattern) features of one entity, in declaration order."""
    if entity not in ENTITIES:
        raise ValidationError("entity", f"must be one of {', '.join(ENTITIES)}; got {entity!r}")
    return tuple(
        s for s in DECLARED if s.entity == entity and (s.model_input or not model_input_only)
    )


def defaults(entity: Entity) -> dict[str, Any]:
    """Every feature of a stored entity at its default: what a missing entity reads as."""
    return {s.name: s.default_value() for s in specs_for(entity)}


def _surface_features() -> dict[Surface, tuple[str, ...]]:
    def names(entity: Entity, *only: str) -> list[str]:
        return [
            s.name for s in specs_for(entity, model_input_only=True)
            if not s.request_time and (not only or s.name in only)
        ]

    user = names("user")
    return {
        Surface.COMMUNITIES: tuple(user + names("community") + names("user_community")),
        Surface.PEOPLE: tuple(user + [f"cand_{n}" for n in user] + names("user_user")),
        Surface.CONTENT: tuple(
            user + names("content") + names("user_community", "uc_is_member", "uc_friends_inside", "uc_blocked")
        ),
    }


SURFACE_FEATURES.update(_surface_features())


def feature_spec_of_column(column: str) -> FeatureSpec:
    """The spec behind a surface column (``cand_<name>`` is the candidate user's copy of a user feature)."""
    return get_spec(column[len("cand_"):] if column.startswith("cand_user_") else column)
