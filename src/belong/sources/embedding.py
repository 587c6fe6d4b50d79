"""``ials_ann``: embedding retrieval — iALS factors of communities served through an ANN index.

The backend (exact / faiss HNSW / usearch / hnswlib) is chosen by measuring recall and latency on the trained
item factors with real user vectors as queries (:func:`belong.ann.choose_backend`). Users whose memberships changed
after training (or who did not exist then) are folded in: one least-squares solve against the fixed item
factors, no retraining. A model artifact keeps the factors, the training rows and the index
(:meth:`IalsAnn.fitted`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from belong.ann import AnnIndex, auto_index
from belong.domain import Surface
from belong.pipeline.components import CandidateSource, SourceConfig, register
from belong.pipeline.types import Candidate, Proposals, Reason, Request
from belong.state import WorldState

if TYPE_CHECKING:
    from belong.models.ials import IALS



def ials_of(cfg: Any) -> IALS:
    """An unfitted iALS model with a source config's ``factors``, ``iterations``, ``regularization``, ``alpha`` and
    ``seed`` (the embedding sources': ``ials_ann``, ``friend_embedding``)."""
    from belong.models import registry

    return registry.create("ials", {  # type: ignore[return-value]
        "factors": cfg.factors, "iterations": cfg.iterations, "regularization": cfg.regularization,
        "alpha": cfg.alpha, "random_state": cfg.seed,
    })

class IalsAnnConfig(SourceConfig, kw_only=True, forbid_unknown_fields=True):
    factors: int = 64
    iterations: int = 15
    regularization: float = 0.05
    alpha: float = 10.0
    ann: str = "auto"  # exact | faiss_hnsw | usearch | hnswlib | auto (measure and choose)
    min_recall: float = 0.95
    exact_budget_ms: float = 1.0  # exact search this fast per request needs no approximate index (0: always compare)
    seed: int = 0


@register("source", "ials_ann")
class IalsAnn(CandidateSource):
    """Communities whose iALS factors score highest for the user (inner product)."""

    Config = IalsAnnConfig
    config: IalsAnnConfig

    def _ials(self) -> IALS:
        return ials_of(self.config)

    def prepare(self, state: WorldState) -> None:
        X = state.membership_csr()
        self.model: IALS | None = None
        self.index: AnnIndex | None = None
        if X.nnz == 0:
            return
        cfg = self.config
        self.model = self._ials().fit(X)
        self.trained_rows = X
        items = self.model.item_factors
        active = np.flatnonzero(np.diff(X.indptr) > 0)
        rng = np.random.default_rng(cfg.seed)
        queries = self.model.user_factors[rng.choice(active, min(active.size, 500), replace=False)]
        self.index = auto_index(items, queries, backend=cfg.ann, k=min(cfg.k, items.shape[0]),
                                min_recall=cfg.min_recall, seed=cfg.seed, exact_budget_ms=cfg.exact_budget_ms)

    def fitted(self) -> dict[str, Any]:
        if self.model is None or self.index is None:
            return {}
        return {"user_factors": self.model.user_factors, "item_factors": self.model.item_factors,
                "trained_rows": self.trained_rows, "index": self.index}

    def restore(self, fitted: dict[str, Any], state: WorldState) -> None:
        self.model, self.index = None, None
        if fitted:
            self.model = self._ials().set_factors(fitted["user_factors"], fitted["item_factors"])
            self.trained_rows, self.index = fitted["trained_rows"], fitted["index"]

    def user_vector(self, state: WorldState, u: int | None, communities: np.ndarray) -> np.ndarray | None:
        """The user's factors: trained ones if their memberships are unchanged, else folded in."""
        assert self.model is not None
        n_items = self.model.item_factors.shape[0]
        known = communities[communities < n_items]
        if known.size == 0:
            return None
        X = self.trained_rows
        if u is not None and u < X.shape[0]:
            trained = X.indices[X.indptr[u]:X.indptr[u + 1]]
            if np.array_equal(np.sort(trained), known):
                return self.model.user_factors[u]
        row = sp.csr_matrix((np.ones(known.size, np.float32), (np.zeros(known.size, np.int64), known)),
                            shape=(1, n_items))
        return self.model.user_vectors(row)[0]

    def _found(self, request: Request, state: WorldState) -> tuple[np.ndarray, np.ndarray] | None:
        """The index's best ``k`` items the user is not in, in its order, and their scores; None: no vector."""
        p = state.profile(request)
        if request.surface is not Surface.COMMUNITIES or self.model is None or self.index is None:
            return None
        vec = self.user_vector(state, p.idx, p.communities)
        if vec is None:
            return None
        ids, scores = self.index.search(vec, self.config.k + p.communities.size)
        ids, scores = np.asarray(ids[0]).astype(np.int64), np.asarray(scores[0])
        ok = (ids >= 0) & np.isin(ids, p.communities, invert=True)
        return ids[ok][: self.config.k], scores[ok][: self.config.k].astype(np.float64)

    def propose_batch(self, requests: list[Request], state: WorldState) -> list[Proposals]:
        """:meth:`generate`'s items and scores without candidate objects."""
        out = []
        for r in requests:
            found = self._found(r, state)
            out.append(Proposals.empty() if found is None else Proposals(*found))
        return out

    def generate(self, request: Request, state: WorldState) -> list[Candidate]:
        found = self._found(request, state)
        if found is None:
            return []
        p = state.profile(request)
        assert self.model is not None
        keep = list(zip(found[0].tolist(), found[1].tolist(), strict=True))
        anchors = p.communities[p.communities < self.model.item_factors.shape[0]]
        F = self.model.item_factors
        closest = (anchors[np.argmax(F[anchors] @ F[[i for i, _ in keep]].T, axis=0)]
                   if request.explain and anchors.size and keep else None)
        out = []
        for n, (i, s) in enumerate(keep):
            if closest is not None:
                a = int(closest[n])
                reason = Reason(f"people with communities like yours ({state.communities.name[a]}) joined it",
                                {"closest": state.communities.ids[a]})
            else:
                reason = Reason("people with communities like yours joined it")
            out.append(Candidate(i, self.name, s, reason))
        return out
