"""Similar communities and similar people, from the live membership relation (Jaccard of member sets).

``similar_communities(c)``: communities whose members overlap most with c's, |A∩B| / |A∪B|.
``similar_users(u)``: people whose communities overlap most with u's, the same measure on community sets.
Both read the anchor's live memberships (events folded in since the build count) against the membership matrix of
the version's build, and explain each answer. Both apply the surfaces' safety policy (:mod:`belong.serve.policy`):
the people of ``similar_users(u)`` are those u's own people surface could show (no block either way, no
teen/adult strangers, ...); a community an anonymous viewer may not see (invite-only, undiscoverable,
age-restricted, inactive) is neither an anchor (404, as unknown) nor an answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from belong.domain import Surface
from belong.pipeline.types import Request
from belong.serve import policy
from belong.serve.versions import ModelVersion


def _top(co: np.ndarray, sizes: np.ndarray, own: int, self_idx: int, k: int, model: ModelVersion,
         viewer: Request) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` by Jaccard (ties: lower index first) among those the viewer's policy allows."""
    jac = co / np.maximum(own + sizes - co, 1)
    cand = np.flatnonzero(co > 0)
    cand = cand[cand != self_idx]
    kept: list[int] = []
    take = 4 * k + 16
    while cand.size and len(kept) < k:  # the best first, a slice at a time, until k pass the policy
        head = cand if cand.size <= take else cand[np.argpartition(-jac[cand], take - 1)[:take]]
        head = head[np.lexsort((head, -jac[head]))]
        kept.extend(policy.allowed(model, viewer, head.tolist()))
        cand = np.setdiff1d(cand, head, assume_unique=True)
        take *= 4
    # a later slice never outranks an earlier one (each slice is the best of what was left)
    out = np.asarray(kept[:k], np.int64)
    return out, jac[out]


def _base(model: ModelVersion) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """users x communities membership CSR of the version's build, and its transpose (never rebuilt per request;
    the anchor's own row is read live, so its joins and leaves since the build count)."""
    members = model.state.members
    return members.base, members.base_t


def similar_communities(model: ModelVersion, community_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    c = policy.visible_community(model, community_id)  # one the caller may not see answers as unknown
    X, XT = _base(model)
    members = st.members_of(c)
    members = members[members < X.shape[0]]
    if members.size == 0 or c >= X.shape[1]:
        return []
    co = np.asarray(X[members].sum(axis=0)).ravel()
    sizes = np.diff(XT.indptr)
    idx, jac = _top(co, sizes, members.size, c, k, model, policy.viewer(Surface.COMMUNITIES))
    return [{"rank": r, "id": st.communities.ids[j], "name": st.communities.name[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} member{'' if int(co[j]) == 1 else 's'} in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]


def similar_users(model: ModelVersion, user_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    u = policy.visible_user(model, user_id)
    X, XT = _base(model)
    mine = st.communities_of(u)
    mine = mine[mine < XT.shape[0]]
    if mine.size == 0 or u >= X.shape[0]:
        return []
    co = np.asarray(XT[mine].sum(axis=0)).ravel()
    sizes = np.diff(X.indptr)
    idx, jac = _top(co, sizes, mine.size, u, k, model, policy.viewer(Surface.PEOPLE, user_id))
    return [{"rank": r, "id": st.users.ids[j], "name": st.users.ids[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} communities in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]
