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
import scipy.sparse as sp

from belong.domain import Event, EventType, TargetKind
from belong.experiments.stats import compare
from belong.loop.backend import Backend, Impression, InProcessBackend, Slate
from belong.loop.latents import latents
from belong.loop.offpolicy import OpeConfig, OpeLog
from belong.loop.response import PARAMS, ResponseModel
from belong.loop.scenario import Scenario, assign, surface_spec
from belong.simulate import DAY_US, SimConfig, simulate_world

Progress = Callable[[str], None]


def _clusters(state: Any, n: int, seed: int) -> np.ndarray:
    from belong.experiments.clusters import leiden

    friends = state.friend_csr()[:n, :n].tocsr()
    return leiden(friends, seed=seed)


class Loop:
    """The simulated world and its people over the days of a run; ``backend`` is belong as they see it
    (:mod:`belong.loop.backend`)."""

    def __init__(self, sc: Scenario, progress: Progress | None = None,
                 backend: Callable[[Scenario, Loop], Backend] | None = None) -> None:
        from belong.state import from_world

        self.sc = sc
        self.say = progress or (lambda _m: None)
        t0 = time.perf_counter()
        cfg = SimConfig(sc.users, sc.communities, sc.seed)
        self.world = simulate_world(sc.users, sc.communities, sc.seed)
        self.state = from_world(self.world, now_us=cfg.end_us)
        self.now = cfg.end_us
        self.lat = latents(cfg)
        self.model = ResponseModel(self.lat, PARAMS)
        n = sc.users
        self.uids = [f"u{i}" for i in range(n)]
        self.su = np.array([self.state.users.index[u] for u in self.uids])  # sim index -> state index
        comm_ids = self.state.communities.ids
        self.comm_sim = np.array([int(c[1:]) for c in comm_ids])  # state community index -> sim index
        self.n_comm = int(self.comm_sim.max()) + 1
        # the loop's own copy of who is a member (sim indices, key u * n_comm + c) and the friend graph (it never
        # changes in a run): the response model's "friends already there" reads them, a day at a time
        members = self.state.membership_csr().tocoo()
        sim_of_state_user = np.full(self.state.n_users, -1, np.int64)
        sim_of_state_user[self.su] = np.arange(n)
        mu, mc = sim_of_state_user[members.row], self.comm_sim[members.col]
        ok = mu >= 0
        self.member_keys: set[int] = set((mu[ok] * self.n_comm + mc[ok]).tolist())
        self.friends_sim = self.state.friend_csr()[self.su][:, self.su].tocsr()
        if sc.unit == "cluster":
            labels = _clusters(self.state, max(self.su) + 1, sc.seed)[self.su]
            self.unit_of = [f"k{int(v)}" for v in labels]
        else:
            self.unit_of = self.uids
        self.arm = assign(sc, self.unit_of)
        self.retrains: list[dict[str, Any]] = []
        self.active = np.ones(n, bool)
        self.shown: list[dict[tuple[int, int], int]] = [defaultdict(int) for _ in sc.arms]  # actual, per person
        # truth: on how many days each (person, community) was in the person's list under each arm while active
        self.listed: list[dict[tuple[int, int], int]] = [defaultdict(int) for _ in sc.arms]
        self.rec_members: list[tuple[int, int, int]] = []  # (user, comm sim index, arm) joins from a list
        self.event_n = 0
        self.pending: list[Event] = []  # events since the backend was last told
        self.impressions: list[Impression] = []
        self.log: list[dict[str, Any]] | None = None  # every visitor's list and joins, when a scenario needs it
        rng = np.random.default_rng([sc.seed, 99])
        self.truth_users = (np.arange(n) if sc.truth_sample == 0 or sc.truth_sample >= n
                            else np.sort(rng.choice(n, sc.truth_sample, replace=False)))
        cfg_ope = OpeConfig.of(sc)
        self.ope = OpeLog(sc, cfg_ope) if cfg_ope is not None else None
        self.backend: Backend = (backend or _in_process)(sc, self)
        self.setup_s = time.perf_counter() - t0

    # ---------------------------------------------------------------------------------------------------- serving
    def retrain(self, day: int) -> None:
        self.state.now_us = self.now
        self.flush()
        rec = self.backend.retrain(day, self.state)
        if self.ope is not None:
            self.ope.refit(self.backend, self.state)
        self.retrains.append(rec)
        self.say(f"day {day}: trained {len(self.sc.arms)} arms in {rec.get('seconds', 0.0):.1f}s")

    def flush(self) -> None:
        """Tell the backend what happened since it was last told."""
        if self.pending or self.impressions:
            self.backend.record(self.pending, self.impressions)
        self.pending, self.impressions = [], []

    def friends_there(self, users: np.ndarray, comms: list[np.ndarray]) -> list[np.ndarray]:
        """Friends of ``users[i]`` who are members of each of ``comms[i]`` (the loop's membership now)."""
        if len(users) == 0:
            return []
        keys = np.fromiter(self.member_keys, np.int64, len(self.member_keys))
        members = sp.csr_matrix((np.ones(len(keys)), (keys // self.n_comm, keys % self.n_comm)),
                                shape=(self.sc.users, self.n_comm))
        fm = (self.friends_sim[users] @ members).tocsr()
        lens = np.array([len(c) for c in comms])
        rows = np.repeat(np.arange(len(users)), lens)
        cols = np.concatenate(comms) if len(comms) else np.zeros(0, np.int64)
        flat = np.asarray(fm[rows, cols]).ravel() if len(cols) else np.zeros(0)
        return np.split(flat, np.cumsum(lens)[:-1])

    def _event(self, etype: EventType, u: int, c: int) -> None:
        self.event_n += 1
        ev = Event(event_id=f"loop-{self.sc.name}-{self.event_n}", ts_us=self.now + self.event_n, type=etype,
                   actor=self.uids[u], target=f"c{c}", target_kind=TargetKind.COMMUNITY)
        self.state.apply(ev)
        self.pending.append(ev)
        key = u * self.n_comm + c
        if etype is EventType.JOIN:
            self.member_keys.add(key)
        else:
            self.member_keys.discard(key)

    # ---------------------------------------------------------------------------------------------------- a day
    def serve_day(self, d: int, visitors: np.ndarray) -> list[dict[int, Slate]]:
        """Every list of the day, per arm: the arm's visitors and every active truth-sample person (the truth needs
        each arm's list), served in one batch per arm on the state at the start of the day."""
        truth_active = self.truth_users[self.active[self.truth_users]]
        out = []
        for a in range(len(self.sc.arms)):
            need = np.union1d(visitors[self.arm[visitors] == a], truth_active).tolist()
            out.append(dict(zip(need, self.backend.serve(a, need, d), strict=True)))
        return out

    def truth_day(self, lists: list[dict[int, Slate]]) -> np.ndarray:
        """Expected recommended joins today of each truth-sample person under every arm: (people, arms)."""
        m = self.model
        out = np.zeros((len(self.truth_users), len(self.sc.arms)))
        rows = np.flatnonzero(self.active[self.truth_users])
        users = self.truth_users[rows]
        for a in range(len(self.sc.arms)):
            comms = [lists[a][u].comms for u in users.tolist()]
            friends = self.friends_there(users, comms)
            listed = self.listed[a]
            before = [np.array([listed[(u, int(c))] for c in cs], np.int64)
                      for u, cs in zip(users.tolist(), comms, strict=True)]
            lens = np.array([len(c) for c in comms], np.int64)
            flat = m.expected_flat_unseen(users, comms, friends, before)
            per_list = np.bincount(np.repeat(np.arange(len(comms)), lens), weights=flat, minlength=len(comms))
            out[rows, a] = m.visit_p[users] * per_list
            if self.ope is not None:
                slot = self.ope.slot or 0
                at = np.zeros(len(comms))
                has = lens > slot
                at[has] = flat[(np.cumsum(lens) - lens)[has] + slot]
                self.ope.truth(a, m.visit_p[users], per_list, at)
            for u, cs in zip(users.tolist(), comms, strict=True):
                for c in cs.tolist():
                    listed[(u, c)] += 1
        if self.ope is not None:
            self.ope.truth_weight(m.visit_p[users])
        return out

    def day(self, d: int, y: np.ndarray, daily: list[dict[str, Any]], timing: dict[str, float]) -> None:
        sc, m, n = self.sc, self.model, self.sc.users
        rng = np.random.default_rng([sc.seed, d, 0])
        r = rng.random(n)
        self.active = np.where(self.active, r >= m.p.churn, r < m.p.comeback)
        visitors = np.flatnonzero(self.active & (rng.random(n) < m.visit_p))
        t0, c0 = time.perf_counter(), time.process_time()
        lists = self.serve_day(d, visitors)
        t1, c1 = time.perf_counter(), time.process_time()
        timing["serving"] += t1 - t0
        timing["cpu_serving"] += c1 - c0
        if self.ope is not None:
            lg = self.ope.cfg.logging
            logged = visitors[self.arm[visitors] == lg].tolist()
            self.ope.contexts(d, self.uids, logged, [lists[lg][u] for u in logged])
        truth = self.truth_day(lists)
        t2, c2 = time.perf_counter(), time.process_time()
        timing["truth"] += t2 - t1
        timing["cpu_truth"] += c2 - c1
        per_arm = {a.name: {"visitors": 0, "impressions": 0, "joins": 0, "leaves": 0} for a in sc.arms}
        exam = m.examine(max(sc.k, 1))
        arms = self.arm[visitors]
        slates = [lists[int(a)][u] for u, a in zip(visitors.tolist(), arms.tolist(), strict=True)]
        comms = [s.comms for s in slates]
        friends = self.friends_there(visitors, comms)
        before = [np.array([self.shown[int(a)][(u, int(c))] for c in cs], np.float64)
                  for u, a, cs in zip(visitors.tolist(), arms.tolist(), comms, strict=True)]
        p = m.join_p_many(visitors, comms, friends, before)
        lens = np.array([len(c) for c in comms], np.int64)
        pos = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        draws = rng.random((2, int(lens.sum())))
        joined = np.split((draws[0] < exam[pos]) & (draws[1] < p), np.cumsum(lens)[:-1])
        ts = self.now
        for i, (u, a) in enumerate(zip(visitors.tolist(), arms.tolist(), strict=True)):
            s, cs = slates[i], comms[i]
            row = per_arm[sc.arms[a].name]
            row["visitors"] += 1
            row["impressions"] += len(cs)
            if not len(cs):
                continue
            self.impressions.append(Impression(self.uids[u], s.request_id, ts + self.event_n, tuple(
                (f"c{c}", j, float(q)) for j, (c, q) in enumerate(zip(cs.tolist(), s.propensity.tolist(),
                                                                       strict=True)))))
            shown = self.shown[a]
            for c in cs.tolist():
                shown[(u, c)] += 1
            picked = cs[joined[i]].tolist()
            if self.ope is not None:
                self.ope.outcome(a, u, joined[i])
            if self.log is not None:
                self.log.append({"day": d, "user": u, "arm": a, "comms": cs, "propensity": s.propensity,
                                 "joined": joined[i]})
            for c in picked:
                self._event(EventType.JOIN, u, c)
                self.rec_members.append((u, c, a))
                y[u] += 1
                row["joins"] += 1
        kept = []
        if self.rec_members:
            arr = np.array(self.rec_members)
            leave = rng.random(len(arr)) < m.leave_p(arr[:, 0], arr[:, 1])
            for (u, c, a), gone in zip(self.rec_members, leave.tolist(), strict=True):
                if gone:
                    self._event(EventType.LEAVE, u, c)
                    per_arm[sc.arms[a].name]["leaves"] += 1
                else:
                    kept.append((u, c, a))
        self.rec_members = kept
        organic = np.flatnonzero(self.active & (rng.random(n) < m.p.organic * self.lat.activity))
        org_rng = np.random.default_rng([sc.seed, d, 1])
        n_org = 0
        for u in organic.tolist():
            c = m.organic_pick(org_rng, u)
            if u * self.n_comm + c not in self.member_keys:
                self._event(EventType.JOIN, u, c)
                n_org += 1
        self.flush()
        timing["responding"] += time.perf_counter() - t2
        timing["cpu_responding"] += time.process_time() - c2
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


def _in_process(sc: Scenario, loop: Loop) -> Backend:
    """``mode = "inprocess"``: served as the HTTP mode's server serves (:mod:`belong.loop.twin`: the same lists);
    ``"direct"``: the arms' pipelines on the loop's own state, refitted in place (faster; other lists)."""
    if sc.mode == "direct":
        return InProcessBackend([surface_spec(sc, a) for a in sc.arms], loop.uids, loop.comm_sim, sc.k)
    from belong.loop.twin import TwinBackend

    return TwinBackend(sc, loop.world, loop.uids, progress=loop.say)


def run(sc: Scenario, progress: Progress | None = None,
        backend: Callable[[Scenario, Loop], Backend] | None = None,
        partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run a scenario; returns the result (daily metrics per arm, estimated and true effects, retrains, timings,
    the backend's figures). ``backend`` builds what serves the simulated people (default: in process, by
    ``sc.mode``: ``inprocess`` as the server serves, ``direct`` on the loop's own state); ``partial``
    gets the result so far after every day but the last (``days_done`` says how many)."""
    if sc.mode == "http" and backend is None:
        from belong.errors import ValidationError

        raise ValidationError("run.mode", "http: give a backend (belong.loop.http.factory()); belong loop run "
                              "does")
    say = progress or (lambda _m: None)
    t_start = time.perf_counter()
    loop = Loop(sc, say, backend)
    try:
        return _run(sc, loop, say, t_start, partial)
    finally:
        loop.backend.close()


PHASES = ("serving", "responding", "truth", "retraining")


def _run(sc: Scenario, loop: Loop, say: Progress, t_start: float, partial: Callable[[dict[str, Any]], None] | None
         ) -> dict[str, Any]:
    timing = {"setup": loop.setup_s} | {k: 0.0 for k in PHASES} | {f"cpu_{k}": 0.0 for k in PHASES}
    y = np.zeros(sc.users)
    daily: list[dict[str, Any]] = []
    truth_total = np.zeros((len(loop.truth_users), len(sc.arms)))
    for d in range(sc.days):
        w0 = time.perf_counter()
        if d % sc.retrain_days == 0:
            t0, c0 = time.perf_counter(), time.process_time()
            loop.retrain(d)
            timing["retraining"] += time.perf_counter() - t0
            timing["cpu_retraining"] += time.process_time() - c0
        loop.day(d, y, daily, timing)
        truth_total += daily[-1].pop("_truth")
        row = daily[-1]["arms"]
        say(f"day {d + 1}/{sc.days} ({time.perf_counter() - w0:.0f}s): "
            + ", ".join(f"{k} {v['joins']} joins / {v['visitors']} visits" for k, v in row.items()))
        if partial is not None and d + 1 < sc.days:
            partial(_result(sc, loop, y, daily, truth_total, timing, t_start, d + 1))
    return _result(sc, loop, y, daily, truth_total, timing, t_start, sc.days)


def _result(sc: Scenario, loop: Loop, y: np.ndarray, daily: list[dict[str, Any]], truth_total: np.ndarray,
            timing: dict[str, float], t_start: float, days: int) -> dict[str, Any]:
    """The result after ``days`` simulated days (the whole run, or a partial one)."""
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
        "days_done": days,
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
        "backend": loop.backend.stats(),
        **({"offpolicy": loop.ope.result()} if loop.ope is not None else {}),
        "timing_s": {k: round(v, 3) for k, v in timing.items()} | {"total": round(total, 3)},
        "seconds_per_day": {k: round(timing[k] / days, 3) for k in PHASES},
        "cpu_seconds_per_day": {k: round(timing[f"cpu_{k}"] / days, 3) for k in PHASES},
    }


def run_all(sc: Scenario, progress: Progress | None = None,
            backend: Callable[[Scenario, Loop], Backend] | None = None,
            partial: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """A scenario with several ``units``: the same experiment once per unit of randomisation (same world and seed),
    as ``{"scenario", "variants": [result per unit], "effects": [every variant's effects]}``; else :func:`run`."""
    if len(sc.units) < 2:
        return run(sc.with_overrides(unit=sc.units[0]) if sc.units else sc, progress, backend, partial)
    say = progress or (lambda _m: None)
    variants = []
    for unit in sc.units:
        say(f"randomised by {unit}")
        variants.append(run(sc.with_overrides(unit=unit, units=()), progress, backend, partial))
    return {"scenario": variants[0]["scenario"] | {"unit": "+".join(sc.units)}, "variants": variants,
            "effects": [e for v in variants for e in v["effects"]]}
