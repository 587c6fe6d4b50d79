"""The day loop: each simulated day people visit, are served by belong, respond (docs/LOOP.md), and the world
state moves; on a schedule the surfaces are retrained on the state so far. The result is plain data (JSON-able)
that :mod:`belong.loop.report` renders.

Determinism: every random draw comes from ``default_rng([seed, day, step])``, people are visited in index
order, so the same scenario (and seed) gives the same result.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from belong.domain import Event, EventType, Surface, TargetKind
from belong.experiments.assign import bucket
from belong.experiments.declaration import BUCKETS
from belong.experiments.stats import compare
from belong.loop.latents import latents
from belong.loop.response import PARAMS, ResponseModel
from belong.loop.scenario import Scenario, surface_spec
from belong.pipeline import Request
from belong.simulate import DAY_US, SimConfig, simulate_world

Progress = Callable[[str], None]


def assign(sc: Scenario, units: list[str]) -> np.ndarray:
    """Arm index of each unit: the experiments' sha256 bucket of (scenario name, unit), by cumulative weight."""
    bounds = np.round(np.cumsum([a.weight for a in sc.arms]) * BUCKETS).astype(int)
    bounds[-1] = BUCKETS
    b = np.array([bucket(sc.name, u) for u in units])
    return np.searchsorted(bounds, b, side="right")


def _clusters(state: Any, n: int, seed: int) -> np.ndarray:
    from belong.experiments.clusters import leiden

    friends = state.friend_csr()[:n, :n].tocsr()
    return leiden(friends, seed=seed)


class Loop:
    def __init__(self, sc: Scenario, progress: Progress | None = None) -> None:
        from belong import surfaces
        from belong.state import from_world

        self.sc = sc
        self.say = progress or (lambda _m: None)
        t0 = time.perf_counter()
        cfg = SimConfig(sc.users, sc.communities, sc.seed)
        world = simulate_world(sc.users, sc.communities, sc.seed)
        self.state = from_world(world, now_us=cfg.end_us)
        self.now = cfg.end_us
        self.lat = latents(cfg)
        self.model = ResponseModel(self.lat, PARAMS)
        n = sc.users
        self.uids = [f"u{i}" for i in range(n)]
        self.su = np.array([self.state.users.index[u] for u in self.uids])  # sim index -> state index
        comm_ids = self.state.communities.ids
        self.comm_sim = np.array([int(c[1:]) for c in comm_ids])  # state community index -> sim index
        if sc.unit == "cluster":
            labels = _clusters(self.state, max(self.su) + 1, sc.seed)[self.su]
            self.unit_of = [f"k{int(v)}" for v in labels]
        else:
            self.unit_of = self.uids
        self.arm = assign(sc, self.unit_of)
        self.surfaces = surfaces
        self.pipelines: list[Any] = [None] * len(sc.arms)
        self.retrains: list[dict[str, Any]] = []
        self.setup_s = time.perf_counter() - t0
        self.active = np.ones(n, bool)
        self.shown: list[dict[tuple[int, int], int]] = [defaultdict(int) for _ in sc.arms]  # actual, per person
        self.shadow: list[dict[tuple[int, int], float]] = [defaultdict(float) for _ in sc.arms]  # expected, truth
        self.rec_members: list[tuple[int, int, int]] = []  # (user, comm sim index, arm) joins from a list
        self.event_n = 0
        rng = np.random.default_rng([sc.seed, 99])
        self.truth_users = (np.arange(n) if sc.truth_sample == 0 or sc.truth_sample >= n
                            else np.sort(rng.choice(n, sc.truth_sample, replace=False)))

    # ---------------------------------------------------------------------------------------------------- serving
    def retrain(self, day: int) -> None:
        t0 = time.perf_counter()
        self.state.now_us = self.now
        for i, arm in enumerate(self.sc.arms):
            self.pipelines[i] = self.surfaces.load(surface_spec(self.sc, arm)).fit(self.state)
        s = time.perf_counter() - t0
        self.retrains.append({"day": day, "seconds": round(s, 3)})
        self.say(f"day {day}: trained {len(self.sc.arms)} arms in {s:.1f}s")

    def serve(self, arm: int, u: int) -> np.ndarray:
        """The sim indices of the communities arm ``arm`` shows person ``u``, in order."""
        pipe = self.pipelines[arm]
        resp = pipe.run(Request(self.uids[u], Surface.COMMUNITIES, k=self.sc.k, explain=False, seed=0))
        return np.array([self.comm_sim[it.index] for it in resp.items], dtype=np.int64)

    def friends_there(self, u: int, comms: np.ndarray) -> np.ndarray:
        friends = self.state.friends_of(int(self.su[u]))
        if len(friends) == 0 or len(comms) == 0:
            return np.zeros(len(comms))
        cidx = self.state.communities.index
        out = np.zeros(len(comms))
        for j, c in enumerate(comms):
            members = self.state.members_of(cidx[f"c{int(c)}"])
            out[j] = np.intersect1d(friends, members, assume_unique=True).size
        return out

    def _event(self, etype: EventType, u: int, c: int, day: int) -> None:
        self.event_n += 1
        self.state.apply(Event(event_id=f"loop-{self.sc.name}-{self.event_n}", ts_us=self.now + self.event_n,
                               type=etype, actor=self.uids[u], target=f"c{c}", target_kind=TargetKind.COMMUNITY))

    # ---------------------------------------------------------------------------------------------------- a day
    def truth_day(self) -> np.ndarray:
        """Expected recommended joins today of each truth-sample person under every arm: (people, arms)."""
        m = self.model
        out = np.zeros((len(self.truth_users), len(self.sc.arms)))
        for r, u in enumerate(self.truth_users.tolist()):
            if not self.active[u]:
                continue
            for a in range(len(self.sc.arms)):
                comms = self.serve(a, u)
                before = np.array([self.shadow[a][(u, int(c))] for c in comms])
                out[r, a] = m.visit_p[u] * m.expected_joins(u, comms, self.friends_there(u, comms), before)
                for c in comms:
                    self.shadow[a][(u, int(c))] += m.visit_p[u]
        return out

    def day(self, d: int, y: np.ndarray, daily: list[dict[str, Any]], timing: dict[str, float]) -> None:
        sc, m, n = self.sc, self.model, self.sc.users
        rng = np.random.default_rng([sc.seed, d, 0])
        r = rng.random(n)
        self.active = np.where(self.active, r >= m.p.churn, r < m.p.comeback)
        t0 = time.perf_counter()
        truth = self.truth_day()
        timing["truth"] += time.perf_counter() - t0
        visitors = np.flatnonzero(self.active & (rng.random(n) < m.visit_p))
        per_arm = {a.name: {"visitors": 0, "impressions": 0, "joins": 0, "leaves": 0} for a in sc.arms}
        exam = m.examine(sc.k)
        serve_s = respond_s = 0.0
        for u in visitors.tolist():
            a = int(self.arm[u])
            t0 = time.perf_counter()
            comms = self.serve(a, u)
            t1 = time.perf_counter()
            serve_s += t1 - t0
            row = per_arm[sc.arms[a].name]
            row["visitors"] += 1
            row["impressions"] += len(comms)
            if len(comms):
                before = np.array([self.shown[a][(u, int(c))] for c in comms])
                p = m.join_p(u, comms, self.friends_there(u, comms), before)
                draws = rng.random((2, len(comms)))
                joined = (draws[0] < exam[: len(comms)]) & (draws[1] < p)
                for c in comms:
                    self.shown[a][(u, int(c))] += 1
                for c in comms[joined].tolist():
                    self._event(EventType.JOIN, u, c, d)
                    self.rec_members.append((u, c, a))
                    y[u] += 1
                    row["joins"] += 1
            respond_s += time.perf_counter() - t1
        t0 = time.perf_counter()
        kept = []
        if self.rec_members:
            arr = np.array(self.rec_members)
            leave = rng.random(len(arr)) < m.leave_p(arr[:, 0], arr[:, 1])
            for (u, c, a), gone in zip(self.rec_members, leave.tolist(), strict=True):
                if gone:
                    self._event(EventType.LEAVE, u, c, d)
                    per_arm[sc.arms[a].name]["leaves"] += 1
                else:
                    kept.append((u, c, a))
        self.rec_members = kept
        organic = np.flatnonzero(self.active & (rng.random(n) < m.p.organic * self.lat.activity))
        org_rng = np.random.default_rng([sc.seed, d, 1])
        n_org = 0
        cidx = self.state.communities.index
        for u in organic.tolist():
            c = m.organic_pick(org_rng, u)
            if not self.state.is_member(int(self.su[u]), cidx[f"c{c}"]):
                self._event(EventType.JOIN, u, c, d)
                n_org += 1
        respond_s += time.perf_counter() - t0
        timing["serving"] += serve_s
        timing["responding"] += respond_s
        arm_of_truth = self.arm[self.truth_users]
        daily.append({
            "day": d, "active": int(self.active.sum()), "organic_joins": n_org,
            "arms": {a.name: {**per_arm[a.name],
                              "joins_per_visitor": per_arm[a.name]["joins"] / max(1, per_arm[a.name]["visitors"]),
                              "expected_joins_per_person": float(truth[:, i].mean()),
                              "expected_own_arm": float(truth[arm_of_truth == i, i].mean())
                              if np.any(arm_of_truth == i) else 0.0}
                     for i, a in enumerate(sc.arms)},
            "_truth": truth,
        })
        self.now += DAY_US
        self.state.now_us = self.now


def run(sc: Scenario, progress: Progress | None = None) -> dict[str, Any]:
    """Run a scenario in process; returns the result (daily metrics per arm, estimated and true effects, retrains,
    timings)."""
    if sc.mode != "inprocess":
        from belong.errors import ValidationError

        raise ValidationError("run.mode", "only 'inprocess' runs in this version (HTTP mode: see docs/LOOP.md)")
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    loop = Loop(sc, say)
    timing = {"setup": loop.setup_s, "serving": 0.0, "responding": 0.0, "retraining": 0.0, "truth": 0.0}
    y = np.zeros(sc.users)
    daily: list[dict[str, Any]] = []
    truth_total = np.zeros((len(loop.truth_users), len(sc.arms)))
    for d in range(sc.days):
        if d % sc.retrain_days == 0:
            t0 = time.perf_counter()
            loop.retrain(d)
            timing["retraining"] += time.perf_counter() - t0
        loop.day(d, y, daily, timing)
        truth_total += daily[-1].pop("_truth")
        row = daily[-1]["arms"]
        say(f"day {d + 1}/{sc.days}: " + ", ".join(f"{k} {v['joins']} joins / {v['visitors']} visits"
                                                    for k, v in row.items()))
    arm_names = np.array([sc.arms[i].name for i in loop.arm], dtype=object)
    cluster = np.array(loop.unit_of, dtype=object) if sc.unit == "cluster" else None
    ests = {e.arm: e for e in compare(y, arm_names, control=sc.control, cluster=cluster)}
    ci = next(i for i, a in enumerate(sc.arms) if a.name == sc.control)
    effects = []
    for i, a in enumerate(sc.arms):
        if i == ci:
            continue
        e = ests[a.name]
        diff = truth_total[:, i] - truth_total[:, ci]
        true_eff = float(diff.mean())
        true_se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        effects.append({
            "arm": a.name, "control": sc.control, "unit": sc.unit, "metric": "recommended joins per person",
            "n": e.n, "control_n": e.control_n, "mean": e.mean, "control_mean": e.control_mean,
            "effect": e.effect, "se": e.se, "ci_low": e.ci_low, "ci_high": e.ci_high, "p_value": e.p_value,
            "av_ci_low": e.av_ci_low, "av_ci_high": e.av_ci_high,
            "true_effect": true_eff, "true_effect_se": true_se, "bias": e.effect - true_eff,
            "covers_truth": bool(e.ci_low <= true_eff <= e.ci_high),
            "excludes_zero": bool(e.ci_low > 0 or e.ci_high < 0),
        })
    total = time.perf_counter() - t_start
    return {
        "scenario": {"name": sc.name, "description": sc.description, "users": sc.users,
                     "communities": sc.communities, "seed": sc.seed, "days": sc.days, "k": sc.k, "unit": sc.unit,
                     "retrain_days": sc.retrain_days, "mode": sc.mode, "truth_people": int(len(loop.truth_users)),
                     "arms": [{"name": a.name, "surface": a.surface, "weight": a.weight} for a in sc.arms],
                     "control": sc.control},
        "response_params": PARAMS.to_dict(),
        "assigned": {a.name: int((loop.arm == i).sum()) for i, a in enumerate(sc.arms)},
        "units": int(len(set(loop.unit_of))),
        "daily": daily,
        "effects": effects,
        "retrains": loop.retrains,
        "timing_s": {k: round(v, 3) for k, v in timing.items()} | {"total": round(total, 3)},
        "seconds_per_day": {k: round(timing[k] / sc.days, 3) for k in ("serving", "responding", "truth")}
        | {"retraining": round(timing["retraining"] / sc.days, 3)},
    }


def run_all(sc: Scenario, progress: Progress | None = None) -> dict[str, Any]:
    """A scenario with several ``units``: the same experiment once per unit of randomisation (same world and seed),
    as ``{"scenario", "variants": [result per unit], "effects": [every variant's effects]}``; else :func:`run`."""
    if len(sc.units) < 2:
        return run(sc.with_overrides(unit=sc.units[0]) if sc.units else sc, progress)
    say = progress or (lambda _m: None)
    variants = []
    for unit in sc.units:
        say(f"randomised by {unit}")
        variants.append(run(sc.with_overrides(unit=unit, units=()), progress))
    return {"scenario": variants[0]["scenario"] | {"unit": "+".join(sc.units)}, "variants": variants,
            "effects": [e for v in variants for e in v["effects"]]}
