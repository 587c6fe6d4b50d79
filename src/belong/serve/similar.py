"""Similar communities and similar people, from the live membership relation (Jaccard of member sets).

``similar_communities(c)``: communities whose members overlap most with c's, |A∩B| / |A∪B|.
``similar_users(u)``: people whose communities overlap most with u's, the same measure on community sets.
Both read the model's membership matrix (base + events folded in since the build) and explain each answer.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from belong.errors import UnknownIdError
from belong.serve.models import ModelVersion


def _top(co: np.ndarray, sizes: np.ndarray, own: int, self_idx: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    jac = co / np.maximum(own + sizes - co, 1)
    jac[self_idx] = 0.0
    cand = np.flatnonzero(co > 0)
    if cand.size > k:
        cand = cand[np.argpartition(-jac[cand], k - 1)[:k]]
    cand = cand[np.lexsort((cand, -jac[cand]))]
    return cand, jac[cand]


def _members_matrix(model: ModelVersion) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """users x communities CSR and its transpose, of the live relation; cached per state version."""
    cached = model.meta_cache.get("membership")
    if cached is not None and cached[0] == model.state.members.version:
        return cached[1], cached[2]
    X = model.state.membership_csr()
    out = (model.state.members.version, X, X.T.tocsr())
    model.meta_cache["membership"] = out
    return out[1], out[2]


def similar_communities(model: ModelVersion, community_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    c = st.communities.get(community_id, "community")
    X, XT = _members_matrix(model)
    members = XT.indices[XT.indptr[c]:XT.indptr[c + 1]] if c < XT.shape[0] else np.empty(0, np.int64)
    if members.size == 0:
        return []
    co = np.asarray(X[members].sum(axis=0)).ravel()
    sizes = np.diff(XT.indptr)
    idx, jac = _top(co, sizes, members.size, c, k)
    return [{"rank": r, "id": st.communities.ids[j], "name": st.c_name[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} members in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]


def similar_users(model: ModelVersion, user_id: str, k: int) -> list[dict[str, Any]]:
    st = model.state
    u = st.users.index.get(user_id)
    if u is None:
        raise UnknownIdError("user", user_id)
    X, XT = _members_matrix(model)
    mine = X.indices[X.indptr[u]:X.indptr[u + 1]] if u < X.shape[0] else np.empty(0, np.int64)
    if mine.size == 0:
        return []
    co = np.asarray(XT[mine].sum(axis=0)).ravel()
    sizes = np.diff(X.indptr)
    idx, jac = _top(co, sizes, mine.size, u, k)
    return [{"rank": r, "id": st.users.ids[j], "name": st.users.ids[j], "score": round(float(s), 6),
             "explanation": f"{int(co[j])} communities in common"}
            for r, (j, s) in enumerate(zip(idx.tolist(), jac.tolist(), strict=True), start=1)]
