"""RP3beta: a 3-step random walk user -> item -> user -> item, with transition probabilities raised to ``alpha``
and the destination's popularity divided out by ``popularity ** beta`` (Paudel et al. 2017, as implemented by
Ferrari Dacrema et al. 2019). Each item keeps its ``k`` strongest successors. With ``weighted``, the user -> item
step follows the interaction weights; the item -> user step and the popularity stay binary (as Dacrema's code).
"""

from __future__ import annotations

from typing import Annotated

import msgspec
import numpy as np
import scipy.sparse as sp

from belong.models.base import Recommender
from belong.models.neighbours import topk_rows


class RP3betaConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    alpha: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    beta: Annotated[float, msgspec.Meta(ge=0)] = 0.5
    k: Annotated[int, msgspec.Meta(ge=1)] = 200
    #: train on interaction weights (e.g. 1-5 ratings) instead of a binary matrix
    weighted: bool = False


def _row_normalise(M: sp.csr_matrix) -> sp.csr_matrix:
    sums = np.asarray(M.sum(axis=1), dtype=np.float32).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv) @ M, dtype=np.float32)


class RP3beta(Recommender):
    name = "rp3beta"
    config_class = RP3betaConfig

    @property
    def uses_weights(self) -> bool:  # type: ignore[override]
        """Train on interaction weights (e.g. ratings, message counts) when the config says ``weighted``."""
        return bool(self.config.weighted)  # type: ignore[attr-defined]

    def _fit(self, X: sp.csr_matrix) -> None:
        cfg: RP3betaConfig = self.config  # type: ignore[assignment]
        B = sp.csr_matrix(X > 0, dtype=np.float32)
        P_ui = _row_normalise(X)  # weighted when the config asks (X is binary otherwise)
        P_iu = _row_normalise(B.T.tocsr())
        if cfg.alpha != 1.0:
            P_ui = P_ui.power(cfg.alpha)
            P_iu = P_iu.power(cfg.alpha)
        popularity = np.asarray(B.sum(axis=0), dtype=np.float32).ravel()
        penalty = np.zeros_like(popularity)
        np.power(popularity, -cfg.beta, out=penalty, where=popularity > 0)

        def block(lo: int, hi: int) -> np.ndarray:
            return (P_iu[lo:hi] @ P_ui).toarray() * penalty[None, :]

        self.W = topk_rows(block, X.shape[1], cfg.k)

    def _score(self, user_idx: np.ndarray, X_users: sp.csr_matrix) -> np.ndarray:
        return (X_users @ self.W).toarray()
