"""Declarations: every feature the issue lists is declared once, names resolve, bad names are named."""

from __future__ import annotations

import pytest

from belong.domain import Surface
from belong.errors import ValidationError
from belong.features.assemble import source_values
from belong.features.registry import (
    DECLARED,
    ENTITIES,
    SURFACE_FEATURES,
    defaults,
    feature_spec_of_column,
    get_spec,
    specs_for,
)

REQUIRED = {
    "user": ["user_activity_1d", "user_activity_7d", "user_activity_28d", "user_communities_joined",
             "user_friend_count", "user_age_group", "user_locale"],
    "community": ["community_size", "community_growth_7d", "community_activity_per_member_7d", "community_locale",
                  "community_tags", "community_age_restricted"],
    "user_community": ["uc_friends_inside", "uc_co_membership", "uc_text_similarity"],
    "user_user": ["uu_mutual_friends", "uu_adamic_adar", "uu_shared_communities", "uu_past_interactions"],
}


def test_required_features_are_declared_once_with_their_entity():
    names = [s.name for s in DECLARED]
    assert len(names) == len(set(names))
    for entity, required in REQUIRED.items():
        for name in required:
            assert get_spec(name).entity == entity
    for spec in DECLARED:
        assert spec.entity in ENTITIES and spec.description and spec.freshness_s >= 0
        assert spec.request_time == (spec.freshness_s == 0)


def test_surface_columns_resolve_to_model_inputs():
    for surface in Surface:
        columns = SURFACE_FEATURES[surface]
        assert len(columns) == len(set(columns))
        for col in columns:
            spec = feature_spec_of_column(col)
            assert spec.model_input and not spec.request_time
    assert "cand_user_friend_count" in SURFACE_FEATURES[Surface.PEOPLE]


def test_source_features_by_pattern():
    assert get_spec("src_ials_ann_score").dtype == "float" and get_spec("src_ials_ann_score").default is None
    assert get_spec("src_co_membership_rank").dtype == "int"
    assert source_values({"trending": (3, 0.5), "ials_ann": (0, 2.0)}) == {
        "src_trending_rank": 3, "src_trending_score": 0.5, "src_ials_ann_rank": 0, "src_ials_ann_score": 2.0,
    }
    with pytest.raises(ValidationError, match="unknown feature 'src_Bad-Name_rank'"):
        source_values({"Bad-Name": (0, 1.0)})


def test_unknown_names_and_entities_are_validation_errors():
    with pytest.raises(ValidationError) as info:
        get_spec("user_favourite_colour")
    assert info.value.field == "feature" and "user_favourite_colour" in info.value.reason
    with pytest.raises(ValidationError, match="entity"):
        specs_for("guild")  # type: ignore[arg-type]


def test_defaults_are_fresh_copies():
    a, b = defaults("user"), defaults("user")
    a["user_interests"].append("x")
    a["user_friend_degrees"]["f"] = 1
    assert b["user_interests"] == [] and b["user_friend_degrees"] == {}
    assert set(a) == {s.name for s in specs_for("user")}
