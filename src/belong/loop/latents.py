"""The simulator's hidden truth about a world: each person's topic interests and each community's topic mixture.

:mod:`belong.simulate` draws them from seeded generators and keeps only what a platform would see; this module
redraws them exactly (same seeds, same order of draws), so the loop's response model can use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from belong.simulate import LOCALE_P, LOCALES, TOPIC_NAMES, SimConfig, _new_users


@dataclass(frozen=True)
class Latents:
    theta: np.ndarray  # (n_users, topics): interests, rows sum to 1
    activity: np.ndarray  # (n_users,): log-normal, mean 1
    user_locale: np.ndarray  # (n_users,) int
    phi: np.ndarray  # (n_communities, topics): topic mixture, rows sum to 1
    comm_locale: np.ndarray  # (n_communities,) int
    popularity: np.ndarray  # (n_communities,) Zipf-like weight, max 1

    def affinity(self, users: np.ndarray, comms: np.ndarray) -> np.ndarray:
        """Elementwise fit of user ``users[i]`` with community ``comms[i]``: topic overlap (theta · phi, in [0, 1])
        times a locale match (1 same locale, 0.3 an English community, else 0.05)."""
        topic = np.einsum("ij,ij->i", self.theta[users], self.phi[comms])
        ul, cl = self.user_locale[users], self.comm_locale[comms]
        loc = np.where(ul == cl, 1.0, np.where(cl == 0, 0.3, 0.05))
        return topic * loc


def latents(cfg: SimConfig) -> Latents:
    """Redraw the latent variables of the world ``cfg`` generates (identical to :func:`belong.simulate.simulate`)."""
    rng = np.random.default_rng([cfg.seed, 0])
    m, k, n_loc = cfg.n_communities, len(TOPIC_NAMES), len(LOCALES)
    phi = rng.dirichlet(np.full(k, 0.15), size=m)
    comm_loc = rng.choice(n_loc, size=m, p=0.5 * LOCALE_P + 0.5 * np.eye(n_loc)[0])
    rank = rng.permutation(m) + 1
    popularity = rank.astype(np.float64) ** -cfg.zipf_exponent
    thetas, acts, locs = [], [], []
    for chunk, lo in enumerate(range(0, cfg.n_users, cfg.chunk_users)):
        hi = min(lo + cfg.chunk_users, cfg.n_users)
        cohort, _ = _new_users(cfg, np.random.default_rng([cfg.seed, chunk + 1]), lo, hi)
        thetas.append(cohort.theta)
        acts.append(cohort.activity)
        locs.append(cohort.loc)
    return Latents(np.concatenate(thetas), np.concatenate(acts), np.concatenate(locs).astype(np.int64), phi,
                   comm_loc.astype(np.int64), popularity)
