"""Similar communities and similar people, from the live membership relation (Jaccard of member sets).

``similar_communities(c)``: communities whose members overlap most with c's, |A∩B| / |A∪B|.
``similar_users(u)``: people whose communities overlap most with u's, the same measure on community sets.
Both read the anchor's live memberships (events folded in since the build count) against the membership matrix of
the version's build, and explain each answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from belong.errors import UnknownIdError
from belong.serve.versions import ModelVersion


def _top(co: np.ndarray, sizes: np.ndarray, own: int, self_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    jac = co / np.maximum(own + sizes - co, 1)
    jac[self_idx] = 0.0
    cand = np.flatnonzero(co > 0)
    if cand.size > k:
        cand = cand[np.argpartition(-jac[cand], k - 1)[:k]]
    cand = cand[np.lexsort((cand, -jac[cand]))]
    return cand, jac[cand]


def _base(model: ModelVersion) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """users x communities membership CSR of the version's build, and its transpose (never rebuilt per request;
    the anchor's own row is read live, so its joins and leaves since the build count)."""
    members = model.state.members
    return members.base, members.base_t


def similar_communities(model: ModelVersion, community_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    c = st.communities.get(community_id, "community")
    X, XT = _base(model)
    members = st.members_of(c)
    members = members[members < X.shape[0]]
    if members.size == 0 or c >= X.shape[1]:
        return []
    co = np.asarray(X[members].sum(axis=0)).ravel()
    sizes = np.diff(XT.indptr)
    idx, jac = _top(co, sizes, members.size, c, k)
    return [{"rank": r, "id": st.communities.ids[j], "name": st.communities.name[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} member{'' if int(co[j]) == 1 else 's'} in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]


def similar_users(model: ModelVersion, user_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    u = st.users.index.get(user_id)
    if u is None:
        raise UnknownIdError("user", user_id)
    X, XT = _base(model)
    mine = st.communities_of(u)
    mine = mine[mine < XT.shape[0]]
    if mine.size == 0 or u >= X.shape[0]:
        return []
    co = np.asarray(XT[mine].sum(axis=0)).ravel()
    sizes = np.diff(X.indptr)
    idx, jac = _top(co, sizes, mine.size, u, k)
    return [{"rank": r, "id": st.users.ids[j], "name": st.users.ids[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} communities in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]
