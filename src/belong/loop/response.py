"""The response model: how simulated people answer what they are shown (docs/LOOP.md gives the story and every
value). The parameters are fixed here, before any scenario runs, and no scenario may change them: a scenario
chooses arms, sizes and seeds, never how people behave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from belong.loop.latents import Latents


@dataclass(frozen=True)
class ResponseParams:
    visit_base: float = 0.30  # P(visit today) = min(visit_cap, visit_base · activity); activity is log-normal
    visit_cap: float = 0.95
    churn: float = 0.01  # an active person stops visiting with this probability each day ...
    comeback: float = 0.05  # ... and a churned one comes back with this probability each day
    position_bias: float = 1.0  # P(examine position i, 0-based) = (i + 1) ** -position_bias
    intercept: float = -4.5  # join | examined: sigmoid(intercept + fit·affinity + friends·log1p(friends there)
    fit: float = 8.0  # + novelty [never shown before] - fatigue · times shown before)
    friends: float = 0.9
    novelty: float = 0.3
    fatigue: float = 0.4
    leave_base: float = 0.03  # a recommended join is left each day with leave_base · (1 - min(1, affinity / 0.4))
    leave_fit_scale: float = 0.4
    organic: float = 0.02  # organic joins a day: P = organic · activity, community drawn by interest and locale

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


PARAMS = ResponseParams()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ResponseModel:
    """Vectorised probabilities of the response model over one world's latents."""

    def __init__(self, lat: Latents, params: ResponseParams = PARAMS) -> None:
        self.lat = lat
        self.p = params
        self.visit_p = np.minimum(params.visit_cap, params.visit_base * lat.activity)

    def examine(self, k: int) -> np.ndarray:
        return (np.arange(k) + 1.0) ** -self.p.position_bias

    def join_p(self, user: int, comms: np.ndarray, friends_there: np.ndarray, shown_before: np.ndarray) -> np.ndarray:
        """P(join | examined) of each community in ``comms`` for ``user``."""
        p = self.p
        aff = self.lat.affinity(np.full(len(comms), user), comms)
        z = (p.intercept + p.fit * aff + p.friends * np.log1p(friends_there)
             + np.where(shown_before == 0, p.novelty, 0.0) - p.fatigue * shown_before)
        return sigmoid(z)

    def expected_joins(self, user: int, comms: np.ndarray, friends_there: np.ndarray, shown_before: np.ndarray
                       ) -> float:
        """Expected joins from one served list, given a visit: Σ_i examine(i) · P(join | examined)."""
        if len(comms) == 0:
            return 0.0
        return float(np.sum(self.examine(len(comms)) * self.join_p(user, comms, friends_there, shown_before)))

    def join_p_many(self, users: np.ndarray, comms: list[np.ndarray], friends_there: list[np.ndarray],
                    shown_before: list[np.ndarray]) -> np.ndarray:
        """:meth:`join_p` of many lists at once (list ``i`` is person ``users[i]``'s), concatenated."""
        lens = np.array([len(c) for c in comms], np.int64)
        if not lens.sum():
            return np.zeros(0)
        p = self.p
        aff = self.lat.affinity(np.repeat(np.asarray(users, np.int64), lens), np.concatenate(comms))
        before = np.concatenate(shown_before)
        z = (p.intercept + p.fit * aff + p.friends * np.log1p(np.concatenate(friends_there))
             + np.where(before == 0, p.novelty, 0.0) - p.fatigue * before)
        return sigmoid(z)

    def expected_joins_many(self, users: np.ndarray, comms: list[np.ndarray], friends_there: list[np.ndarray],
                            shown_before: list[np.ndarray]) -> np.ndarray:
        """:meth:`expected_joins` of many lists at once, one value per list."""
        lens = np.array([len(c) for c in comms], np.int64)
        w = self.expected_flat(users, comms, friends_there, shown_before)
        return np.bincount(np.repeat(np.arange(len(comms)), lens), weights=w, minlength=len(comms))

    def expected_flat(self, users: np.ndarray, comms: list[np.ndarray], friends_there: list[np.ndarray],
                      shown_before: list[np.ndarray]) -> np.ndarray:
        """Expected joins of every shown item, given a visit (``examine(position) · P(join | examined)``), the lists
        concatenated."""
        lens = np.array([len(c) for c in comms], np.int64)
        if not lens.sum():
            return np.zeros(0)
        pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        return self.examine(int(lens.max()))[pos] * self.join_p_many(users, comms, friends_there, shown_before)

    def expected_flat_unseen(self, users: np.ndarray, comms: list[np.ndarray], friends_there: list[np.ndarray],
                             listed_before: list[np.ndarray]) -> np.ndarray:
        """:meth:`expected_flat` when how often each item was *shown* is not known, only on how many earlier days
        it was in the person's list while they were active (``listed_before``): each of those days they visited
        with ``P(visit)``, independently, so the times shown is Binomial(listed, P(visit)) and the expectation is
        over it exactly (novelty when shown 0 times, fatigue per showing)."""
        lens = np.array([len(c) for c in comms], np.int64)
        if not lens.sum():
            return np.zeros(0)
        from scipy.stats import binom

        p = self.p
        rep = np.repeat(np.asarray(users, np.int64), lens)
        n = np.concatenate(listed_before).astype(np.int64)
        v = self.visit_p[rep]
        base = (p.intercept + p.fit * self.lat.affinity(rep, np.concatenate(comms))
                + p.friends * np.log1p(np.concatenate(friends_there)))
        s = np.arange(int(n.max()) + 1 if n.size else 1)[None, :]
        pmf = binom.pmf(s, n[:, None], v[:, None])  # 0 where s > n
        join = sigmoid(base[:, None] + np.where(s == 0, p.novelty, 0.0) - p.fatigue * s)
        pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        return self.examine(int(lens.max()))[pos] * np.sum(pmf * join, axis=1)

    def leave_p(self, users: np.ndarray, comms: np.ndarray) -> np.ndarray:
        aff = self.lat.affinity(users, comms)
        return self.p.leave_base * (1.0 - np.minimum(1.0, aff / self.p.leave_fit_scale))

    def organic_pick(self, rng: np.random.Generator, user: int) -> int:
        """A community for an organic join: topic from the person's interests, then ∝ popularity · topic share ·
        locale match."""
        lat = self.lat
        topic = int(rng.choice(lat.theta.shape[1], p=lat.theta[user]))
        loc = np.where(lat.comm_locale == lat.user_locale[user], 1.0, np.where(lat.comm_locale == 0, 0.3, 0.03))
        w = lat.popularity * lat.phi[:, topic] * loc
        cdf = np.cumsum(w)
        return int(min(np.searchsorted(cdf, rng.random() * cdf[-1]), len(cdf) - 1))
