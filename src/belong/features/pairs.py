"""Pair features (user x community, user x user), computed on request from two entity rows.

Pairs are not materialised: the inputs are the entity rows' support features (membership lists, friend degrees,
friends' communities, interactions, blocks), which the online store holds per entity and
:class:`belong.features.state.FeatureState` produces as of any time. The same functions serve training rows and
online requests, so the two can only differ if their entity rows differ.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

Row = Mapping[str, Any]


def _language(locale: str) -> str:
    return locale.split("-", 1)[0].lower()


def membership_pair(user_row: Row, community_id: str) -> dict[str, float]:
    """Features of a user and a community that need only the user's row (also used for content's community)."""
    return {
        "uc_is_member": int(community_id in user_row["user_community_ids"]),
        "uc_friends_inside": int(user_row["user_friend_communities"].get(community_id, 0)),
        "uc_blocked": int(community_id in user_row["user_blocked_communities"]),
    }


def user_community(user_row: Row, community_id: str, community_row: Row) -> dict[str, Any]:
    """Every computed ``user_community`` feature (request-time ones are added by the caller)."""
    neighbors = community_row["community_neighbors"]
    co = 0.0
    for c in user_row["user_community_ids"]:  # sorted list: a fixed summation order, identical everywhere
        co += neighbors.get(c, 0.0)
    interests = set(user_row["user_interests"])
    tags = set(community_row["community_tags"])
    union = interests | tags
    u_lang, c_lang = _language(user_row["user_locale"]), _language(community_row["community_locale"])
    out = membership_pair(user_row, community_id)
    out.update(
        uc_co_membership=co,
        uc_tag_overlap=len(interests & tags) / len(union) if union else 0.0,
        uc_locale_match=int(u_lang == c_lang and u_lang != "und"),
    )
    return out


def user_user(user_id: str, user_row: Row, cand_id: str, cand_row: Row) -> dict[str, Any]:
    """Every ``user_user`` feature of a user and a candidate person."""
    degrees = user_row["user_friend_degrees"]
    common = sorted(degrees.keys() & cand_row["user_friend_degrees"].keys())
    aa = 0.0
    for w in common:
        if degrees[w] > 1:
            aa += 1.0 / math.log(degrees[w])
    shared = set(user_row["user_community_ids"]) & set(cand_row["user_community_ids"])
    return {
        "uu_mutual_friends": len(common),
        "uu_adamic_adar": aa,
        "uu_shared_communities": len(shared),
        "uu_past_interactions": int(user_row["user_interactions"].get(cand_id, 0)),
        "uu_are_friends": int(cand_id in degrees),
        "uu_blocked": int(cand_id in user_row["user_blocked_users"] or user_id in cand_row["user_blocked_users"]),
    }
