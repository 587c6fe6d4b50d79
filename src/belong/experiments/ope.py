"""Off-policy evaluation: what a new policy would have earned, estimated from the log of the current one.

**The exploration slot** (one action per logged list, :class:`SlotFeedback`): round ``i`` logged action ``a_i`` with
propensity ``p_i`` (the logging policy's probability, from ``ranking.rerank.slot_distribution``) and observed reward
``r_i``; the evaluation policy's distribution over the round's actions is ``π(·|x_i)``, ``w_i = π(a_i|x_i) / p_i``.

* IPS   ``mean(w r)``                          (obp ``InverseProbabilityWeighting``)
* SNIPS ``sum(w r) / sum(w)``                  (obp ``SelfNormalizedInverseProbabilityWeighting``)
* DM    ``mean(Σ_a π(a|x) q̂(x, a))``           (obp ``DirectMethod``)
* DR    ``DM + mean(w (r - q̂(x, a_i)))``        (obp ``DoublyRobust``)

**Whole lists** (:class:`SlateFeedback`, per-position rewards ``r_ik``, marginal probabilities ``p_ik`` / ``e_ik``
of the logged item at its position under the logging / evaluation policy; positions are drawn independently, which
holds for belong's selector, where only the exploration slot is random):

* standard IPS          ``mean_i Σ_k r_ik Π_j e_ij/p_ij``   (obp ``SlateStandardIPS``)
* independent IPS       ``mean_i Σ_k r_ik e_ik/p_ik``       (obp ``SlateIndependentIPS``; rewards per position)
* reward-interaction    ``mean_i Σ_k r_ik Π_{j≤k} e_ij/p_ij`` (obp ``SlateRewardInteractionIPS``; cascade)
* pseudo-inverse        ``mean_i (Σ_k r_ik)(Σ_k e_ik/p_ik − K + 1)`` (Swaminathan et al. 2017, the closed form for
  a logging policy that factorises over positions; unbiased for additive list rewards)

Every estimate carries the effective sample size ``(Σw)²/Σw²`` and the largest weight. Where the evaluation policy
puts probability on an action (or item at a position) the logging policy never takes, no estimator can see what
would have happened there: the estimates are **refused** (``value`` None) with a warning saying how much mass is
unsupported and where, never a number.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from belong.errors import ValidationError

SUPPORT_TOL = 1e-12


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer: ``value`` (None when refused), its standard error over rounds, the effective sample
    size and largest importance weight, and ``warning`` (the reason of a refusal)."""

    estimator: str
    value: float | None
    se: float | None
    n: int
    ess: float | None
    max_weight: float | None
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SlotFeedback:
    """Logged rounds at the exploration slot. Actions are columns of a per-round table (``items[i][j]`` names
    column ``j`` of round ``i`` when given; padding columns have zero probability under both policies)."""

    reward: np.ndarray  # (n,)
    action: np.ndarray  # (n,) column of the logged action
    pscore: np.ndarray  # (n,) logging probability of the logged action
    action_dist: np.ndarray  # (n, A) evaluation policy
    logging_support: np.ndarray  # (n, A) bool: logging probability > 0
    q_hat: np.ndarray | None = None  # (n, A) estimated reward of each action, for DM and DR
    items: list[list[str]] | None = None

    def __post_init__(self) -> None:
        self.reward = np.asarray(self.reward, dtype=float)
        self.action = np.asarray(self.action, dtype=np.int64)
        self.pscore = np.asarray(self.pscore, dtype=float)
        self.action_dist = np.asarray(self.action_dist, dtype=float)
        self.logging_support = np.asarray(self.logging_support, dtype=bool)
        n = self.reward.shape[0]
        if self.action_dist.ndim != 2 or self.action_dist.shape[0] != n:
            raise ValidationError("action_dist", f"must have shape (rounds={n}, actions), got {self.action_dist.shape}")
        for name in ("action", "pscore"):
            if getattr(self, name).shape != (n,):
                raise ValidationError(name, f"must have {n} values, got shape {getattr(self, name).shape}")
        if self.logging_support.shape != self.action_dist.shape:
            raise ValidationError("logging_support", "must have the shape of action_dist")
        if self.q_hat is not None:
            self.q_hat = np.asarray(self.q_hat, dtype=float)
            if self.q_hat.shape != self.action_dist.shape:
                raise ValidationError("q_hat", "must have the shape of action_dist")
        if n and (self.action.min() < 0 or self.action.max() >= self.action_dist.shape[1]):
            raise ValidationError("action", "a logged action is outside the round's action table")
        if np.any(~(self.pscore > 0)) or np.any(self.pscore > 1):
            raise ValidationError("pscore", "logging propensities must be in (0, 1]")
        if np.any(self.action_dist < 0) or np.any(self.action_dist.sum(axis=1) > 1 + 1e-9):
            raise ValidationError("action_dist", "each round's probabilities must be non-negative and sum to <= 1")
        if n and not self.logging_support[np.arange(n), self.action].all():
            raise ValidationError("logging_support", "a logged action is outside the logging policy's support")

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    def weights(self) -> np.ndarray:
        return self.action_dist[np.arange(self.n), self.action] / self.pscore


@dataclass
class SlateFeedback:
    """Logged lists: per round ``i`` and position ``k`` the reward, and the marginal probabilities of the logged
    item at that position under the logging (``pscore``) and evaluation (``eval_pscore``) policies; positions not
    shown have ``mask`` False. ``unsupported`` (n,) is the evaluation policy's mass, summed over positions, on
    (item, position) pairs the logging policy never shows."""

    reward: np.ndarray  # (n, K)
    pscore: np.ndarray  # (n, K)
    eval_pscore: np.ndarray  # (n, K)
    unsupported: np.ndarray  # (n,)
    mask: np.ndarray | None = None  # (n, K) bool

    def __post_init__(self) -> None:
        self.reward = np.asarray(self.reward, dtype=float)
        self.pscore = np.asarray(self.pscore, dtype=float)
        self.eval_pscore = np.asarray(self.eval_pscore, dtype=float)
        self.unsupported = np.asarray(self.unsupported, dtype=float)
        shape = self.reward.shape
        if self.reward.ndim != 2:
            raise ValidationError("reward", f"must have shape (rounds, positions), got {shape}")
        self.mask = np.ones(shape, bool) if self.mask is None else np.asarray(self.mask, dtype=bool)
        for name in ("pscore", "eval_pscore", "mask"):
            if getattr(self, name).shape != shape:
                raise ValidationError(name, f"must have the shape of reward {shape}")
        if self.unsupported.shape != (shape[0],):
            raise ValidationError("unsupported", f"must have {shape[0]} values")
        if np.any(~(self.pscore[self.mask] > 0)) or np.any(self.pscore[self.mask] > 1):
            raise ValidationError("pscore", "logging propensities of shown positions must be in (0, 1]")
        if np.any(self.eval_pscore[self.mask] < 0) or np.any(self.eval_pscore[self.mask] > 1 + 1e-12):
            raise ValidationError("eval_pscore", "must be probabilities")
        # positions not shown: no reward, weight 1 (they neither add nor scale anything)
        self.reward = np.where(self.mask, self.reward, 0.0)
        self.pscore = np.where(self.mask, self.pscore, 1.0)
        self.eval_pscore = np.where(self.mask, self.eval_pscore, 1.0)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])


def _estimate(name: str, terms: np.ndarray, w: np.ndarray | None, value: float | None = None) -> Estimate:
    n = int(terms.shape[0])
    if n == 0:
        return Estimate(name, None, None, 0, None, None, "no logged rounds")
    v = float(terms.mean()) if value is None else value
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else None
    if w is None:
        return Estimate(name, v, se, n, None, None)
    return Estimate(name, v, se, n, effective_sample_size(w), float(w.max()))


def effective_sample_size(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def _refused(names: list[str], n: int, reason: str) -> dict[str, Estimate]:
    return {k: Estimate(k, None, None, n, None, None, reason) for k in names}


SLOT_ESTIMATORS = ["ips", "snips", "dm", "dr"]
SLATE_ESTIMATORS = ["standard_ips", "independent_ips", "reward_interaction_ips", "pseudo_inverse"]


def slot_support_warning(fb: SlotFeedback) -> str | None:
    """The reason to refuse, or None: evaluation mass on actions the logging policy never takes."""
    off = np.where(fb.logging_support, 0.0, fb.action_dist)
    bad = off.sum(axis=1)
    rounds = np.flatnonzero(bad > SUPPORT_TOL)
    if rounds.size == 0:
        return None
    i = int(rounds[0])
    j = int(np.argmax(off[i]))
    what = f"item {fb.items[i][j]!r}" if fb.items is not None and j < len(fb.items[i]) else f"action column {j}"
    return (f"the evaluation policy puts {bad.sum() / max(fb.n, 1):.1%} of its slot probability on actions the "
            f"logging policy never takes ({rounds.size} of {fb.n} rounds; e.g. round {i}: {what} with "
            f"probability {off[i, j]:.3g}); nothing in the log says what they would have earned, so no estimate")


def evaluate_slot(fb: SlotFeedback) -> dict[str, Estimate]:
    """IPS, SNIPS, DM and DR at the exploration slot (DM and DR only with ``q_hat``), or refusals."""
    names = SLOT_ESTIMATORS if fb.q_hat is not None else ["ips", "snips"]
    reason = slot_support_warning(fb)
    if reason is not None:
        return _refused(names, fb.n, reason)
    w = fb.weights()
    out = {"ips": _estimate("ips", w * fb.reward, w)}
    sw = float(w.sum())
    if sw > 0:
        sn = w * fb.reward / w.mean()
        out["snips"] = _estimate("snips", sn, w, float((w * fb.reward).sum() / sw))
    else:
        out["snips"] = Estimate("snips", None, None, fb.n, 0.0, 0.0,
                                "the evaluation policy gives zero probability to every logged action")
    if fb.q_hat is not None:
        dm = (fb.action_dist * fb.q_hat).sum(axis=1)
        out["dm"] = _estimate("dm", dm, None)
        q_logged = fb.q_hat[np.arange(fb.n), fb.action]
        out["dr"] = _estimate("dr", dm + w * (fb.reward - q_logged), w)
    return out


def slate_support_warning(fb: SlateFeedback) -> str | None:
    rounds = np.flatnonzero(fb.unsupported > SUPPORT_TOL)
    if rounds.size == 0:
        return None
    return (f"the evaluation policy puts probability on items at positions the logging policy never shows them in "
            f"({rounds.size} of {fb.n} lists; on average {fb.unsupported.mean():.3g} of its per-position mass, "
            f"e.g. list {int(rounds[0])}); the whole-list estimators would ignore what those lists earn, so no "
            f"estimate")


def evaluate_slate(fb: SlateFeedback) -> dict[str, Estimate]:
    """Standard, independent, reward-interaction IPS and the pseudo-inverse estimator on whole lists."""
    reason = slate_support_warning(fb)
    if reason is not None:
        return _refused(SLATE_ESTIMATORS, fb.n, reason)
    w_pos = fb.eval_pscore / fb.pscore  # (n, K)
    w_cascade = np.cumprod(w_pos, axis=1)
    w_slate = w_cascade[:, -1]
    K = fb.reward.shape[1]
    total = fb.reward.sum(axis=1)
    return {
        "standard_ips": _estimate("standard_ips", total * w_slate, w_slate),
        "independent_ips": _estimate("independent_ips", (fb.reward * w_pos).sum(axis=1), w_pos[fb.mask]),
        "reward_interaction_ips": _estimate("reward_interaction_ips", (fb.reward * w_cascade).sum(axis=1),
                                            w_cascade[fb.mask]),
        "pseudo_inverse": _estimate("pseudo_inverse", total * (w_pos.sum(axis=1) - K + 1), w_slate),
    }


def reward_model(items: list[list[str]], action: np.ndarray, reward: np.ndarray, prior_strength: float = 5.0,
                 ) -> np.ndarray:
    """q̂ for DM/DR: each item's mean logged reward at the slot, shrunk toward the overall mean with
    ``prior_strength`` pseudo-rounds (items never logged get the overall mean). Shape (n, A) like ``items``."""
    n = len(items)
    width = max((len(r) for r in items), default=0)
    logged = [items[i][int(action[i])] for i in range(n)]
    base = float(np.mean(reward)) if n else 0.0
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for it, r in zip(logged, reward.tolist(), strict=True):
        sums[it] = sums.get(it, 0.0) + r
        counts[it] = counts.get(it, 0) + 1
    q = np.full((n, width), base)
    for i, row in enumerate(items):
        for j, it in enumerate(row):
            c = counts.get(it, 0)
            q[i, j] = (sums.get(it, 0.0) + prior_strength * base) / (c + prior_strength)
    return q
