"""What an answer may carry, by caller: one place that decides it (see ``docs/SECURITY.md``).

* An end user's answer (any caller) carries the ranked items, their explanations and the *social proof* the
  explanations are made of (:data:`PUBLIC_FEATURES`: members, friends inside, mutual friends, the policy's
  propensity and the ranker's probability) — nothing about other people's profiles (age group, locale,
  interests, account age), nothing about the requester's own profile row, no removed candidates.
* An admin caller (``Authorization: Bearer <admin key>``) also gets every item's online features and the
  requester's feature row (the ranker's inputs); ``debug=true`` adds the stage trace and every removed candidate
  with its rule and reason, and needs an admin key (403 otherwise); so does ``arm=NAME`` (another experiment
  arm's list for this user: a counterfactual view, never logged as an exposure).

"Admin" is asked through :func:`caller_is_admin`, the one function the API's key scheme has to answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from belong.serve.auth import AuthError, Role

#: item features an end user may see: social proof, the ranker's probability and the policy's propensity
PUBLIC_FEATURES = frozenset({"members", "friends_in", "mutual_friends", "p_join", "propensity", "explored"})
DEBUG_NEEDS_ADMIN = ("debug=true shows the ranking trace and removed candidates (other people's private data): "
                     "it needs an admin API key ('Authorization: Bearer <admin key>')")
ARM_NEEDS_ADMIN = ("arm=... serves another experiment arm than the user's own (a counterfactual view for "
                   "simulations and QA): it needs an admin API key ('Authorization: Bearer <admin key>')")


def caller_is_admin(request: Request) -> bool:
    """Whether the request carries a valid admin key (a missing, unknown or non-admin key: False)."""
    header = request.headers.get("authorization")
    if not header:
        return False
    try:
        return request.app.state.service.keys.check(header, Role.ADMIN) is Role.ADMIN
    except AuthError:
        return False


def check_debug(request: Request, debug: bool, arm: str | None = None) -> bool:
    """Whether the answer may carry private data (an admin caller); ``debug`` or another experiment ``arm``
    without an admin key: 403."""
    admin = caller_is_admin(request)
    if debug and not admin:
        raise AuthError(403, DEBUG_NEEDS_ADMIN)
    if arm is not None and not admin:
        raise AuthError(403, ARM_NEEDS_ADMIN)
    return admin


def public_features(row: dict[str, Any]) -> dict[str, Any]:
    """The part of an item's feature row an end user may see."""
    return {k: v for k, v in row.items() if k in PUBLIC_FEATURES}
