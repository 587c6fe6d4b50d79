"""``belong bench ope``: belong's off-policy estimators against Open Bandit Pipeline (``obp``) on the same logged data.

obp 0.5.7 cannot be installed beside belong's pinned stack (it declares Python < 3.11 and torch 1.12), so it runs in
its own interpreter (``--obp-python`` / ``BELONG_OBP_PYTHON``; see STACK_NOTES.md for how to make that virtual
environment): the logged data is written to an ``.npz`` file, a short script there computes obp's ``IPW``,
``SNIPW``, ``DM``, ``DR``, ``SlateStandardIPS``, ``SlateIndependentIPS`` and ``SlateRewardInteractionIPS`` on it, and
the figure is the largest absolute difference (goal ≤ 1e-6).

The data is shaped like belong's log: lists of ``K`` items whose exploration slot is epsilon-greedy over a pool of
new communities (propensities from :func:`belong.ranking.rerank.slot_distribution`); the evaluation policy is
another epsilon-greedy selector (another greedy item, another epsilon). The whole-list estimators get a second
data set where every position is drawn at random (so that they weigh more than one position).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.experiments.ope import SlateFeedback, SlotFeedback, evaluate_slate, evaluate_slot, reward_model
from belong.ranking.rerank import slot_distribution

OBP_SCRIPT = r'''
import json, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from obp.ope import (InverseProbabilityWeighting, SelfNormalizedInverseProbabilityWeighting, DirectMethod,
                     DoublyRobust, SlateStandardIPS, SlateIndependentIPS, SlateRewardInteractionIPS)
import obp
d = np.load(sys.argv[1])
out = {"obp_version": obp.__version__}
ad, q = d["action_dist"][:, :, None], d["q_hat"][:, :, None]
kw = dict(reward=d["reward"], action=d["action"], pscore=d["pscore"], action_dist=ad)
out["ips"] = float(InverseProbabilityWeighting().estimate_policy_value(**kw))
out["snips"] = float(SelfNormalizedInverseProbabilityWeighting().estimate_policy_value(**kw))
out["dm"] = float(DirectMethod().estimate_policy_value(action_dist=ad, estimated_rewards_by_reg_model=q))
out["dr"] = float(DoublyRobust().estimate_policy_value(**kw, estimated_rewards_by_reg_model=q))
n, K = d["s_reward"].shape
sid = np.repeat(np.arange(n), K)
pos = np.tile(np.arange(K), n)
r = d["s_reward"].ravel()
p, e = d["s_pscore"], d["s_eval"]
joint_p = np.repeat(p.prod(axis=1), K)
joint_e = np.repeat(e.prod(axis=1), K)
out["standard_ips"] = float(SlateStandardIPS(len_list=K).estimate_policy_value(
    slate_id=sid, reward=r, position=pos, pscore=joint_p, evaluation_policy_pscore=joint_e))
out["independent_ips"] = float(SlateIndependentIPS(len_list=K).estimate_policy_value(
    slate_id=sid, reward=r, position=pos, pscore_item_position=p.ravel(),
    evaluation_policy_pscore_item_position=e.ravel()))
out["reward_interaction_ips"] = float(SlateRewardInteractionIPS(len_list=K).estimate_policy_value(
    slate_id=sid, reward=r, position=pos, pscore_cascade=np.cumprod(p, axis=1).ravel(),
    evaluation_policy_pscore_cascade=np.cumprod(e, axis=1).ravel()))
print(json.dumps(out))
'''


def _epsilon_greedy(rng: np.random.Generator, greedy: int, pool: list[int], eps: float) -> dict[int, float]:
    return slot_distribution(greedy, pool, eps)


def logged_slot(rng: np.random.Generator, rounds: int, *, n_items: int = 40, eps_log: float = 0.3,
                eps_eval: float = 0.5, supported: bool = True) -> tuple[SlotFeedback, float]:
    """Exploration-slot rounds: logging epsilon-greedy with ``eps_log``, evaluation with ``eps_eval`` and another
    greedy item; ``supported=False`` gives the evaluation policy a greedy item outside the logging support. Also
    the evaluation policy's true expected reward on these contexts (each item's click rate is known)."""
    ctr = rng.beta(2, 8, n_items)
    items, actions, pscores, dists, supports = [], [], [], [], []
    rewards = []
    truth = 0.0
    for _ in range(rounds):
        cand = rng.choice(n_items, size=int(rng.integers(3, 9)), replace=False).tolist()
        g_log, pool = cand[0], cand[2:]
        log = _epsilon_greedy(rng, g_log, pool, eps_log)
        if supported:  # another greedy item among those the logging policy can show
            ev = _epsilon_greedy(rng, pool[int(rng.integers(len(pool)))] if rng.random() < 0.7 else g_log, pool,
                                 eps_eval)
        else:  # greedy on an item the logging policy never shows at the slot
            ev = _epsilon_greedy(rng, cand[1], pool, eps_eval)
        cols = sorted(set(log) | set(ev))
        p = np.array([log.get(c, 0.0) for c in cols])
        a = int(rng.choice(len(cols), p=p / p.sum()))
        items.append([str(c) for c in cols])
        actions.append(a)
        pscores.append(p[a])
        dists.append([ev.get(c, 0.0) for c in cols])
        supports.append(p > 0)
        rewards.append(float(rng.random() < ctr[cols[a]]))
        truth += sum(p_e * ctr[c] for c, p_e in ev.items())
    width = max(len(c) for c in items)

    def pad(rows: list, fill: Any) -> np.ndarray:
        return np.array([list(r) + [fill] * (width - len(r)) for r in rows])

    reward = np.array(rewards)
    act = np.array(actions)
    q = reward_model(items, act, reward)
    q = np.hstack([q, np.full((rounds, width - q.shape[1]), float(reward.mean()))]) if q.shape[1] < width else q
    fb = SlotFeedback(reward=reward, action=act, pscore=np.array(pscores), action_dist=pad(dists, 0.0),
                      logging_support=pad([s.tolist() for s in supports], False), q_hat=q, items=items)
    return fb, truth / rounds


def logged_lists(rng: np.random.Generator, rounds: int, K: int = 4, m: int = 5) -> SlateFeedback:
    """Lists whose every position is drawn independently (per-position item distributions for both policies,
    drawn once per round from a Dirichlet), rewards per position with an interaction with the item above."""
    mu = rng.dirichlet(np.ones(m), size=(rounds, K))
    pi = rng.dirichlet(np.ones(m), size=(rounds, K))
    val = rng.beta(2, 5, (K, m))
    reward = np.zeros((rounds, K))
    p = np.zeros((rounds, K))
    e = np.zeros((rounds, K))
    for i in range(rounds):
        prev = 0
        for k in range(K):
            a = int(rng.choice(m, p=mu[i, k]))
            p[i, k], e[i, k] = mu[i, k, a], pi[i, k, a]
            rate = min(1.0, val[k, a] * (1.5 if prev == a else 1.0))
            reward[i, k] = float(rng.random() < rate)
            prev = a
    return SlateFeedback(reward=reward, pscore=p, eval_pscore=e, unsupported=np.zeros(rounds))


def obp_python(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("BELONG_OBP_PYTHON") or None


def run_obp(python: str, slot: SlotFeedback, lists: SlateFeedback, workdir: Path) -> dict[str, Any]:
    """obp's estimates on the same data, computed by ``python`` (an interpreter with obp installed)."""
    data = workdir / "logged.npz"
    if slot.q_hat is None:
        raise ValidationError("q_hat", "the slot feedback needs estimated rewards for DM and DR")
    np.savez(data, reward=slot.reward, action=slot.action, pscore=slot.pscore, action_dist=slot.action_dist,
             q_hat=slot.q_hat, s_reward=lists.reward, s_pscore=lists.pscore, s_eval=lists.eval_pscore)
    script = workdir / "obp_estimates.py"
    script.write_text(OBP_SCRIPT)
    if not Path(python).exists():
        raise ValidationError("--obp-python", f"no interpreter at {python}")
    proc = subprocess.run([python, str(script), str(data)], capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        raise ValidationError("--obp-python", f"obp failed: {proc.stderr.strip()[-800:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def bench_ope(rounds: int = 5000, lists: int = 2000, *, seed: int = 0, python: str | None = None,
              keep: Path | None = None, store: str | None = None, policy: str | None = None,
              logging: str = "communities", window_days: float = 7.0) -> dict[str, Any]:
    """belong's estimates, obp's on the same data (when an obp interpreter is given), their largest difference,
    and a refusal on a policy without support. With ``store`` and ``policy`` the data is that store's logged lists
    (``belong ope``'s feedback) instead of the generated ones."""
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    info: dict[str, Any]
    if store is not None:
        from belong.experiments.ope_data import store_feedback

        if policy is None:
            raise ValidationError("--policy", "is needed with --store")
        data = store_feedback(store, policy, logging=logging, window_days=window_days)
        if data.slot is None or data.slate is None:
            raise ValidationError("store", "no logged list reaches the exploration slot")
        slot, slate, info = data.slot, data.slate, data.info
    else:
        slot, truth = logged_slot(rng, rounds)
        slate = logged_lists(rng, lists)
        info = {"slot_rounds": rounds, "lists": lists, "list_length": int(slate.reward.shape[1]), "seed": seed,
                "slot_true_value": round(float(truth), 6)}
    ours = {**evaluate_slot(slot), **evaluate_slate(slate)}
    seconds = time.perf_counter() - t0
    unsupported = evaluate_slot(logged_slot(np.random.default_rng(seed + 1), 200, supported=False)[0])
    out: dict[str, Any] = {
        "data": info,
        "belong": {k: e.to_dict() for k, e in ours.items()},
        "belong_seconds": round(seconds, 3),
        "refusal_without_support": unsupported["ips"].warning,
    }
    py = obp_python(python)
    if py is None:
        out["obp"] = None
        out["note"] = "no obp interpreter (--obp-python or BELONG_OBP_PYTHON): belong's figures only"
        return out
    if not np.allclose(slot.action_dist.sum(axis=1), 1.0):
        raise ValidationError("policy", "obp needs the evaluation policy's slot distribution to sum to 1 in every "
                                        "round (it leaves the slot empty in some)")
    with tempfile.TemporaryDirectory() as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ref = run_obp(py, slot, slate, work)
    diffs = {k: abs(float(ours[k].value) - float(v)) for k, v in ref.items()  # type: ignore[arg-type]
             if k in ours and ours[k].value is not None}
    out["obp"] = ref
    out["abs_diff"] = diffs
    out["max_abs_diff"] = max(diffs.values()) if diffs else None
    out["goal"] = 1e-6
    out["pass"] = bool(diffs) and max(diffs.values()) <= 1e-6
    out["not_compared"] = sorted(set(ours) - set(diffs))
    return out
