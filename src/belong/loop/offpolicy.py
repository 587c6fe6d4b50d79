"""Scenario (d): the off-policy estimate of a target arm from the logging arm's lists, held against the target's
online value and its truth (docs/LOOP.md).

The logging arm explores (an epsilon-greedy slot: every shown item carries its propensity). Each day a seeded sample
of its visitors' lists (``lists_per_day``) is logged with its context: on the very state those lists were served from,
the logging policy's and every target policy's answer (:func:`belong.experiments.ope_data.policy_answer`: greedy list
and exploration-slot distribution). The reward of a position is 1 when the person joined the community from that
list. At the end :func:`belong.experiments.ope_data.build` turns them into slot and whole-list feedback and
:mod:`belong.experiments.ope` estimates each target's value per list (IPS, SNIPS, DM, DR at the slot; slate IPS
variants over the whole list), or refuses without support. The target runs beside the logging arm on the same world
(its own share of the people), so its online value (joins per list its visitors were shown) faces the same days;
its truth is the response model's expected joins per list under the target, without sampling, visit-weighted like
the lists (every active truth-sample person, each day).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from belong.domain import Surface
from belong.errors import ValidationError
from belong.experiments.ope import evaluate_slate, evaluate_slot
from belong.experiments.ope_data import LoggedList, PolicyAnswer, build, explore_slot, policy_answer
from belong.loop.scenario import Scenario, surface_spec
from belong.pipeline import Request

Z95 = 1.959963984540054


@dataclass(frozen=True)
class OpeConfig:
    logging: int  # arm index of the logging policy
    lists_per_day: int = 200

    @classmethod
    def of(cls, sc: Scenario) -> OpeConfig | None:
        """The scenario's ``[ope]`` table (``logging = "ARM"``, ``lists_per_day = N``), None without one."""
        raw = sc.extra.get("ope")
        if raw is None:
            return None
        if not isinstance(raw, dict):
            raise ValidationError("ope", "must be a table: [ope] logging = \"ARM\"")
        names = [a.name for a in sc.arms]
        logging = raw.get("logging", sc.control)
        if logging not in names:
            raise ValidationError("ope.logging", f"must name an arm ({', '.join(names)}), got {logging!r}")
        n = raw.get("lists_per_day", 200)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValidationError("ope.lists_per_day", f"must be an integer >= 1, got {n!r}")
        unknown = set(raw) - {"logging", "lists_per_day"}
        if unknown:
            raise ValidationError("ope", f"unknown keys {sorted(unknown)} (logging, lists_per_day)")
        return cls(names.index(logging), n)


def _mean_ci(x: np.ndarray) -> dict[str, float | int]:
    n = len(x)
    mean = float(x.mean()) if n else 0.0
    se = float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return {"value": mean, "se": se, "ci_low": mean - Z95 * se, "ci_high": mean + Z95 * se, "n": n}


class OpeLog:
    """The logging arm's sampled lists with their contexts, the online rewards of every arm's lists and the truth
    sums, over a run."""

    def __init__(self, sc: Scenario, cfg: OpeConfig) -> None:
        from belong import surfaces

        self.sc, self.cfg = sc, cfg
        self.targets = [i for i in range(len(sc.arms)) if i != cfg.logging]
        self.pipes: list[Any] = [None] * len(sc.arms)
        self.like_server = False  # set by refit: the backend serves as the engine does
        self.surfaces = surfaces
        self.slot: int | None = None
        self.lists: list[LoggedList] = []
        self.answers: dict[tuple[str, int], PolicyAnswer] = {}
        self.pending: dict[int, LoggedList] = {}  # today's sampled logging lists by person
        self.online: list[list[tuple[float, float]]] = [[] for _ in sc.arms]  # per list: (joins, joins at slot)
        self.truth_sum = np.zeros((len(sc.arms), 2))  # Σ visit_p · E[joins], Σ visit_p · E[joins at slot]
        self.truth_w = 0.0  # Σ visit_p

    def refit(self, backend: Any, state: Any) -> None:
        """The policies as served now: the in-process backend's own pipelines, else fitted here on the loop's
        state."""
        own = getattr(backend, "pipelines", None)
        # the twin of the server (belong.loop.twin) serves as the engine does: the request seed is the state's day
        # and the rules run over just enough of the list; the re-runs here must ask the same way
        self.like_server = bool(getattr(backend, "like_server", False))
        for i, arm in enumerate(self.sc.arms):
            if i != self.cfg.logging and i not in self.targets:
                continue
            self.pipes[i] = own[i] if own is not None and own[i] is not None else \
                self.surfaces.load(surface_spec(self.sc, arm)).fit(state)
        if self.slot is None:
            self.slot = explore_slot(self.pipes[self.cfg.logging])

    def contexts(self, day: int, uids: list[str], visitors: list[int], slates: list[Any]) -> None:
        """Sample today's logging lists (``visitors``, their ``slates``) and record both policies' answers on the
        state they were served from."""
        rng = np.random.default_rng([self.sc.seed, day, 7])
        take = np.sort(rng.choice(len(visitors), min(len(visitors), self.cfg.lists_per_day), replace=False))
        self.pending = {}
        for j in take.tolist():
            u, s = visitors[j], slates[j]
            if not len(s.comms):
                continue
            lst = LoggedList(s.request_id, uids[u], day, [f"c{c}" for c in s.comms.tolist()],
                             s.propensity.tolist(), [0.0] * len(s.comms))
            for a in (self.cfg.logging, *self.targets):
                if self.like_server:
                    from belong.serve.engine import request_seed

                    req = Request(uids[u], Surface.COMMUNITIES, k=self.sc.k,
                                  seed=request_seed(self.pipes[a].state, None))
                    self.answers[(lst.request_id, a)] = policy_answer(self.pipes[a], req, fresh=False)
                else:
                    # as the direct backend asks (its request seed is the day: a seeded source such as pixie's
                    # walks answers differently under another seed, and the logged propensity would not be
                    # reproduced)
                    req = Request(uids[u], Surface.COMMUNITIES, k=self.sc.k, explain=False, seed=day)
                    self.answers[(lst.request_id, a)] = policy_answer(self.pipes[a], req, fresh=True)
            self.pending[u] = lst

    def outcome(self, arm: int, user: int, joined: np.ndarray) -> None:
        """One served list's joins (by position), for the online values and the logged rewards."""
        slot = self.slot if self.slot is not None else 0
        at_slot = float(joined[slot]) if slot < len(joined) else 0.0
        self.online[arm].append((float(joined.sum()), at_slot))
        if arm == self.cfg.logging and user in self.pending:
            lst = self.pending.pop(user)
            lst.reward = joined.astype(float).tolist()
            self.lists.append(lst)

    def truth(self, arm: int, weight: np.ndarray, expected: np.ndarray, at_slot: np.ndarray) -> None:
        """Today's truth for ``arm``: each active truth-sample person's P(visit) and expected joins (all, slot)."""
        self.truth_sum[arm] += [float(weight @ expected), float(weight @ at_slot)]

    def truth_weight(self, weight: np.ndarray) -> None:
        self.truth_w += float(weight.sum())

    def _answer(self, arm: int) -> Callable[[LoggedList], PolicyAnswer]:
        return lambda lst: self.answers[(lst.request_id, arm)]

    def result(self) -> dict[str, Any]:
        names = [a.name for a in self.sc.arms]
        lg = self.cfg.logging
        slot = self.slot if self.slot is not None else 0
        out: dict[str, Any] = {"logging": names[lg], "slot_position": slot + 1, "logged_lists": len(self.lists),
                               "lists_per_day": self.cfg.lists_per_day, "targets": []}
        truth = self.truth_sum / max(self.truth_w, 1e-12)

        def online(a: int) -> dict[str, Any]:
            arr = np.array(self.online[a], np.float64).reshape(-1, 2)
            return {"per_list": _mean_ci(arr[:, 0]), "slot_per_list": _mean_ci(arr[:, 1])}

        out["logging_online"] = online(lg)
        out["logging_truth"] = {"per_list": float(truth[lg, 0]), "slot_per_list": float(truth[lg, 1])}
        for t in self.targets:
            data = build(self.lists, self._answer(t), self._answer(lg), slot=slot)
            on, tr = online(t), {"per_list": float(truth[t, 0]), "slot_per_list": float(truth[t, 1])}
            rows = []
            for level, ests, key in (("slot", evaluate_slot(data.slot) if data.slot is not None else {},
                                      "slot_per_list"),
                                     ("list", evaluate_slate(data.slate) if data.slate is not None else {},
                                      "per_list")):
                for name, e in ests.items():
                    row: dict[str, Any] = {"level": level, "estimator": name, "value": e.value, "se": e.se,
                                           "ess": e.ess, "max_weight": e.max_weight, "warning": e.warning,
                                           "online": on[key]["value"], "online_ci_low": on[key]["ci_low"],
                                           "online_ci_high": on[key]["ci_high"], "truth": tr[key]}
                    if e.value is not None and e.se is not None:
                        lo, hi = e.value - Z95 * e.se, e.value + Z95 * e.se
                        row |= {"ci_low": lo, "ci_high": hi, "bias_vs_truth": e.value - tr[key],
                                "bias_vs_online": e.value - on[key]["value"], "covers_truth": bool(lo <= tr[key] <= hi),
                                "covers_online": bool(lo <= on[key]["value"] <= hi)}
                    rows.append(row)
            out["targets"].append({"arm": names[t], "info": data.info, "online": on, "truth": tr, "estimates": rows})
        return out
