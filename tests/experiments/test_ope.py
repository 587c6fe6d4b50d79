"""belong.experiments.ope: hand-computed slot estimates, exact expectations of the slate estimators over every
possible logged list (unbiasedness where each one claims it), and refusals without support."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from belong.errors import ValidationError
from belong.experiments.ope import SlateFeedback, SlotFeedback, evaluate_slate, evaluate_slot, reward_model


def _slot(**over):
    args = {
        "reward": [1.0, 0.0, 1.0],
        "action": [0, 1, 2],
        "pscore": [0.5, 0.25, 0.25],
        "action_dist": [[0.2, 0.8, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]],
        "logging_support": np.ones((3, 3), bool),
        "q_hat": np.full((3, 3), 0.5),
        "items": [["a", "b", "c"]] * 3,
    }
    args.update(over)
    return SlotFeedback(**args)


def test_slot_estimators_by_hand():
    est = evaluate_slot(_slot())
    # w = 0.2/0.5, 0.5/0.25, 0.8/0.25 = 0.4, 2.0, 3.2
    assert est["ips"].value == pytest.approx((0.4 + 3.2) / 3)
    assert est["snips"].value == pytest.approx(3.6 / 5.6)
    assert est["dm"].value == pytest.approx(0.5)
    assert est["dr"].value == pytest.approx(0.5 + (0.4 * 0.5 - 2.0 * 0.5 + 3.2 * 0.5) / 3)
    assert est["ips"].ess == pytest.approx(5.6**2 / (0.16 + 4.0 + 10.24)) and est["ips"].max_weight == 3.2
    assert all(e.warning is None for e in est.values())


def test_slot_refuses_mass_where_logging_never_went():
    support = np.ones((3, 3), bool)
    support[1, 2] = False  # round 1: the logging policy could never show "c", the new policy would (p = 0.5)
    est = evaluate_slot(_slot(logging_support=support))
    for e in est.values():
        assert e.value is None and e.se is None
        assert "never takes" in e.warning and "'c'" in e.warning and "round 1" in e.warning


def test_slot_feedback_names_bad_fields():
    with pytest.raises(ValidationError) as e:
        _slot(pscore=[0.5, 0.0, 0.25])
    assert e.value.field == "pscore"
    with pytest.raises(ValidationError) as e:
        _slot(action_dist=[[0.9, 0.8, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]])
    assert e.value.field == "action_dist"


def test_ips_snips_dr_are_unbiased_in_exact_expectation():
    """One context, three actions: the expectation of IPS and DR over the logging distribution is the true value
    (any q̂ for DR)."""
    mu = np.array([0.5, 0.3, 0.2])
    pi = np.array([0.1, 0.2, 0.7])
    r = np.array([0.3, 0.9, 0.4])
    q = np.array([0.5, 0.1, 0.8])
    truth = float(pi @ r)
    exp = {"ips": 0.0, "dr": 0.0}
    for a in range(3):
        fb = SlotFeedback([r[a]], [a], [mu[a]], [pi], np.ones((1, 3), bool), q_hat=[q])
        est = evaluate_slot(fb)
        for k in exp:
            exp[k] += mu[a] * est[k].value
    assert exp["ips"] == pytest.approx(truth) and exp["dr"] == pytest.approx(truth)


def _enumerate(mu, pi, reward_fn):
    """Every list of a product logging policy over K positions: its probability and its per-position rewards."""
    K, m = mu.shape
    rows = []
    for slate in itertools.product(range(m), repeat=K):
        prob = float(np.prod([mu[k, a] for k, a in enumerate(slate)]))
        rows.append((prob, slate, reward_fn(slate)))
    return rows


def _expected(mu, pi, reward_fn):
    K = mu.shape[0]
    out: dict[str, float] = {}
    for prob, slate, r in _enumerate(mu, pi, reward_fn):
        fb = SlateFeedback(reward=[r], pscore=[[mu[k, a] for k, a in enumerate(slate)]],
                           eval_pscore=[[pi[k, a] for k, a in enumerate(slate)]], unsupported=[0.0])
        for name, e in evaluate_slate(fb).items():
            out[name] = out.get(name, 0.0) + prob * e.value
    truth = sum(p * sum(r) for p, _, r in _enumerate(pi, mu, reward_fn))
    assert K == 2
    return out, truth


MU = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
PI = np.array([[0.1, 0.6, 0.3], [0.5, 0.4, 0.1]])
VAL = np.array([[0.9, 0.2, 0.5], [0.1, 0.7, 0.3]])


def test_slate_estimators_exact_expectation_additive_rewards():
    """Rewards depend only on (item, position): every estimator is unbiased."""
    out, truth = _expected(MU, PI, lambda s: [VAL[k, a] for k, a in enumerate(s)])
    for name in ("standard_ips", "independent_ips", "reward_interaction_ips", "pseudo_inverse"):
        assert out[name] == pytest.approx(truth, abs=1e-12), name


def test_slate_estimators_exact_expectation_cascade_rewards():
    """The reward at position 2 depends on the item above it: standard and reward-interaction IPS stay unbiased,
    independent IPS does not (its assumption is broken)."""
    def fn(s):
        return [VAL[0, s[0]], VAL[1, s[1]] * (2.0 if s[0] == 1 else 0.5)]

    out, truth = _expected(MU, PI, fn)
    assert out["standard_ips"] == pytest.approx(truth, abs=1e-12)
    assert out["reward_interaction_ips"] == pytest.approx(truth, abs=1e-12)
    assert abs(out["independent_ips"] - truth) > 1e-3


def test_slate_hand_case_and_refusal():
    fb = SlateFeedback(reward=[[1.0, 0.0, 1.0]], pscore=[[1.0, 1.0, 0.5]], eval_pscore=[[1.0, 1.0, 0.25]],
                       unsupported=[0.0])
    est = evaluate_slate(fb)
    assert est["standard_ips"].value == pytest.approx(2 * 0.5)
    assert est["independent_ips"].value == pytest.approx(1 + 0.5)
    assert est["reward_interaction_ips"].value == pytest.approx(1 + 0.5)
    assert est["pseudo_inverse"].value == pytest.approx(2 * (1 + 1 + 0.5 - 3 + 1))
    bad = SlateFeedback(reward=[[1.0, 0.0]], pscore=[[1.0, 1.0]], eval_pscore=[[0.0, 1.0]], unsupported=[1.0])
    for e in evaluate_slate(bad).values():
        assert e.value is None and "never shows" in e.warning


def test_short_lists_are_masked():
    fb = SlateFeedback(reward=[[1.0, 5.0]], pscore=[[0.5, 0.0]], eval_pscore=[[0.25, 0.0]], unsupported=[0.0],
                       mask=[[True, False]])
    assert evaluate_slate(fb)["independent_ips"].value == pytest.approx(0.5)


def test_reward_model_shrinks_item_means():
    items = [["a", "b"], ["a", "b"], ["b", "c"]]
    q = reward_model(items, np.array([0, 0, 0]), np.array([1.0, 1.0, 0.0]), prior_strength=1.0)
    base = 2 / 3
    assert q[0, 0] == pytest.approx((2 + base) / 3)  # a: two rewards of 1
    assert q[2, 0] == pytest.approx((0 + base) / 2)  # b: one reward of 0
    assert q[2, 1] == pytest.approx(base)  # c: never logged
