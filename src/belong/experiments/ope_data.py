"""Logged bandit feedback from the event log, for :mod:`belong.experiments.ope`.

* **Logged lists**: the ``impression`` events of one surface, grouped by request id (user, time, the item at each
  position, the logged propensity — at the exploration slot it is the selector's
  :func:`~belong.ranking.rerank.slot_distribution` probability of the item shown, elsewhere 1).
* **Rewards**: an item earns 1 when the user acted on it within ``window`` after the impression (a ``join`` for
  communities, a ``friend_request`` for people, a click / reaction / message for content), else 0.
* **Contexts**: the world as of the first logged impression (:func:`belong.state.as_of`: nothing the lists caused
  leaks into them). On it, for each logged request, both the evaluation policy and the logging policy run
  ``Pipeline.candidates`` and their selector: the greedy list, and at the slot the exploration distribution computed
  exactly as the selector does (``slot_distribution`` over the candidates of ``explore_source`` not already
  shown, among the candidates the selector is handed after the live rules, as serving calls ``finish``). The
  evaluation policy's distribution gives the weights; the logging policy's re-run gives its support
  (which items it could have put there), for the refusal. The weights use the *logged* propensities.
* An artifact as the policy is loaded on those contexts with its sources as saved: fitted on whatever its store held
  at training time (possibly the logged period too), so its lists can differ from a fit as of the first list.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from belong.domain import Surface
from belong.errors import ValidationError
from belong.experiments.ope import SlateFeedback, SlotFeedback, reward_model
from belong.pipeline import Pipeline
from belong.pipeline.components import Selector
from belong.pipeline.types import Merged, Request
from belong.ranking.rerank import MMRSelector, slot_distribution
from belong.state import WorldState

DAY_US = 86_400_000_000
REWARD_TYPES = {
    Surface.COMMUNITIES: ("join",),
    Surface.PEOPLE: ("friend_request",),
    Surface.CONTENT: ("click", "reaction", "message"),
}


@dataclass
class LoggedList:
    request_id: str
    user_id: str
    ts_us: int
    items: list[str]  # by position (0-based); "" where nothing was logged at a position
    propensity: list[float]
    reward: list[float]


@dataclass
class PolicyAnswer:
    """What a policy does for one request: its greedy list (item ids by position) and its distribution at the
    exploration slot (None when it has no random slot)."""

    greedy: list[str]
    slot: int | None
    slot_dist: dict[str, float] | None


@dataclass
class OpeData:
    lists: list[LoggedList]
    slot: SlotFeedback | None
    slate: SlateFeedback | None
    info: dict[str, Any] = field(default_factory=dict)


def logged_lists(events: pa.Table, surface: Surface, window_us: int = 7 * DAY_US) -> list[LoggedList]:
    """Impressions grouped by request, each position's reward from the user's actions within ``window_us``."""
    imp = events.filter(pc.and_(pc.equal(events["type"], "impression"), pc.equal(events["surface"], surface.value)))
    if imp.num_rows == 0:
        return []
    df = pd.DataFrame({"request_id": imp["request_id"].to_pylist(), "user_id": imp["actor"].to_pylist(),
                       "item_id": imp["target"].to_pylist(), "ts": imp["ts_us"].to_numpy(),
                       "position": imp["position"].to_pylist(), "propensity": imp["propensity"].to_pylist()})
    df = df.dropna(subset=["request_id", "position"])
    df["position"] = df["position"].astype(int)
    df["propensity"] = df["propensity"].fillna(1.0).astype(float)
    acts = events.filter(pc.is_in(events["type"], pa.array(list(REWARD_TYPES[surface]))))
    act = pd.DataFrame({"user_id": acts["actor"].to_pylist(), "item_id": acts["target"].to_pylist(),
                        "act_ts": acts["ts_us"].to_numpy()})
    m = df.reset_index().merge(act, on=["user_id", "item_id"], how="left")
    hit = (m["act_ts"] > m["ts"]) & (m["act_ts"] <= m["ts"] + window_us)
    rewarded = set(m.loc[hit, "index"].tolist())
    df["reward"] = [1.0 if i in rewarded else 0.0 for i in df.index]
    out = []
    for rid, g in df.sort_values(["request_id", "position"]).groupby("request_id", sort=True):
        width = int(g["position"].max()) + 1
        items, props, rewards = [""] * width, [1.0] * width, [0.0] * width
        for pos, it, p, r in zip(g["position"], g["item_id"], g["propensity"], g["reward"], strict=True):
            items[pos], props[pos], rewards[pos] = str(it), float(p), float(r)
        out.append(LoggedList(str(rid), str(g["user_id"].iloc[0]), int(g["ts"].min()), items, props, rewards))
    return out


class _Probe(Selector):
    """Records the candidates the pipeline hands its selector (after the live rules), then delegates."""

    mutates = True
    deterministic = False

    def __init__(self, inner: Selector) -> None:
        super().__init__(inner.config)
        self.inner = inner
        self.name = inner.name
        self.cands: list[Merged] = []

    def select(self, request: Request, cands: list[Merged], scores: np.ndarray) -> list[tuple[Merged, float]]:
        self.cands = [Merged(m.item, m.hits, dict(m.features)) for m in cands]
        return self.inner.select(request, cands, scores)


def policy_answer(pipeline: Pipeline, request: Request, *, fresh: bool = False) -> PolicyAnswer:
    """The greedy list and slot distribution of ``pipeline`` for ``request`` (see the module docstring).
    ``fresh``: as :meth:`Pipeline.run` answers (the list made on this very state, so the selector is handed all of
    it), not as serving finishes a cached list (the rules over just enough of it to fill ``k``)."""
    sel = pipeline.selector
    greedy_sel: Selector = sel
    eps = 0.0
    if isinstance(sel, MMRSelector) and sel.config.epsilon > 0:
        eps = sel.config.epsilon
        greedy_sel = copy.copy(sel)
        greedy_sel.config = msgspec.structs.replace(sel.config, epsilon=0.0)
    probe = _Probe(greedy_sel)
    run = copy.copy(pipeline)
    run.selector = probe
    cands = run.candidates(request)
    # as serving finishes a cached list: the rules over just enough of the list to fill k (fresh: all of it)
    fin = run.finish(request, cands.ranked, made_at=cands.state_version if fresh else None)
    greedy = [m.item for m, _ in fin.chosen]
    ids = [pipeline.item_id(i) for i in greedy]
    if eps <= 0 or not isinstance(sel, MMRSelector):
        return PolicyAnswer(ids, None, None)
    c = sel.config
    slot = c.explore_slot - 1
    if slot >= max(len(greedy), 1):
        return PolicyAnswer(ids, None, None)
    shown = set(greedy)
    pool = sorted({m.item for m in probe.cands if c.explore_source in m.hits and m.item not in shown})
    dist = slot_distribution(greedy[slot] if slot < len(greedy) else None, pool, eps)
    return PolicyAnswer(ids, slot, {pipeline.item_id(i): p for i, p in dist.items()})


def build(lists: list[LoggedList], policy: Callable[[LoggedList], PolicyAnswer],
          logging: Callable[[LoggedList], PolicyAnswer], *, slot: int) -> OpeData:
    """Slot and whole-list feedback from logged lists and the two policies' answers on their contexts."""
    rounds: list[dict[str, Any]] = []
    K = max((len(lst.items) for lst in lists), default=0)
    rew = np.zeros((len(lists), K))
    ps = np.ones((len(lists), K))
    es = np.ones((len(lists), K))
    mask = np.zeros((len(lists), K), bool)
    unsupported = np.zeros(len(lists))
    mismatch = 0
    for i, lst in enumerate(lists):
        ev, lg = policy(lst), logging(lst)
        for k, item in enumerate(lst.items):
            if not item:
                continue
            mask[i, k] = True
            rew[i, k], ps[i, k] = lst.reward[k], lst.propensity[k]
            es[i, k] = _position_dist(ev, k).get(item, 0.0)
        # evaluation mass on (item, position) pairs the logging policy never shows
        for k in range(K):
            e_dist = _position_dist(ev, k)
            l_dist = _position_dist(lg, k)
            if k < len(lst.items) and lst.items[k]:
                l_dist.setdefault(lst.items[k], lst.propensity[k])
            unsupported[i] += sum(p for it, p in e_dist.items() if it not in l_dist)
        if slot < len(lst.items) and lst.items[slot]:
            shown = lst.items[slot]
            l_slot = dict(_position_dist(lg, slot))
            if abs(l_slot.get(shown, 0.0) - lst.propensity[slot]) > 1e-9:
                mismatch += 1
            l_slot.setdefault(shown, lst.propensity[slot])
            e_slot = _position_dist(ev, slot)
            cols = sorted(set(l_slot) | set(e_slot))
            rounds.append({"items": cols, "action": cols.index(shown), "pscore": lst.propensity[slot],
                           "reward": lst.reward[slot], "dist": [e_slot.get(c, 0.0) for c in cols],
                           "support": [l_slot.get(c, 0.0) > 0 for c in cols]})
    slot_fb = _slot_feedback(rounds) if rounds else None
    slate = SlateFeedback(reward=rew, pscore=ps, eval_pscore=es, unsupported=unsupported, mask=mask) if lists \
        else None
    info = {"logged_lists": len(lists), "slot_rounds": len(rounds), "slot_position": slot + 1,
            "slot_rewards": int(sum(r["reward"] for r in rounds)),
            "logging_propensity_mismatches": mismatch}
    return OpeData(lists, slot_fb, slate, info)


def _position_dist(ans: PolicyAnswer, k: int) -> dict[str, float]:
    if k == ans.slot and ans.slot_dist is not None:
        return {it: p for it, p in ans.slot_dist.items() if p > 0}
    return {ans.greedy[k]: 1.0} if k < len(ans.greedy) else {}


def _slot_feedback(rounds: list[dict[str, Any]]) -> SlotFeedback:
    width = max(len(r["items"]) for r in rounds)
    n = len(rounds)
    dist = np.zeros((n, width))
    support = np.zeros((n, width), bool)
    for i, r in enumerate(rounds):
        dist[i, : len(r["dist"])] = r["dist"]
        support[i, : len(r["support"])] = r["support"]
    items = [r["items"] for r in rounds]
    action = np.array([r["action"] for r in rounds])
    reward = np.array([r["reward"] for r in rounds], dtype=float)
    q = np.full((n, width), float(reward.mean()))
    qm = reward_model(items, action, reward)
    q[:, : qm.shape[1]] = qm
    return SlotFeedback(reward=reward, action=action, pscore=np.array([r["pscore"] for r in rounds]),
                        action_dist=dist, logging_support=support, q_hat=q, items=items)


def pipeline_policy(pipeline: Pipeline, k: int | None = None) -> Callable[[LoggedList], PolicyAnswer]:
    """A policy from a fitted pipeline: its answer for the logged request's user (list length as logged)."""

    def answer(lst: LoggedList) -> PolicyAnswer:
        req = Request(lst.user_id, pipeline.surface, k=k or max(len(lst.items), 1), explain=False)
        return policy_answer(pipeline, req)

    return answer


def explore_slot(pipeline: Pipeline) -> int:
    """The 0-based exploration slot of a pipeline's selector (its ``explore_slot``); refused without one."""
    sel = pipeline.selector
    if isinstance(sel, MMRSelector):
        return int(sel.config.explore_slot) - 1
    raise ValidationError("logging", f"surface {pipeline.name!r} has no exploration slot (selector "
                                     f"{sel.name!r}); off-policy evaluation needs a logging policy that explores")


def load_policy(spec: str, state: WorldState, *, like: Pipeline | None = None) -> Pipeline:
    """A fitted policy: a catalogue surface or surface TOML (fitted on ``state``), or a ``belong train`` artifact
    directory (its surface answering for ``like``'s name / kind, loaded on ``state``)."""
    from belong import surfaces
    from belong.training.artifact import MANIFEST, load_pipeline
    from belong.training.locate import artifact_surface

    path = Path(spec)
    if path.is_dir():
        if not (path / MANIFEST).exists():
            raise ValidationError("policy", f"{spec} is a directory without a {MANIFEST} (not a `belong train` "
                                            "artifact)")
        name = like.name if like is not None else "communities"
        kind = like.surface.value if like is not None else "communities"
        entry = artifact_surface(path, name, kind) or artifact_surface(path, kind, kind)
        if entry is None:
            raise ValidationError("policy", f"artifact {spec} has no surface answering for {name!r}")
        return load_pipeline(path, entry, state)
    pipeline = surfaces.load(spec, "policy")
    pipeline.fit(state)
    return pipeline


def store_feedback(store: str, policy: str, *, logging: str = "communities", window_days: float = 7.0,
                   max_lists: int | None = 2000, progress: Callable[[int, int], None] | None = None) -> OpeData:
    """The logged lists of ``store`` (of the logging surface's kind, the first ``max_lists`` in time) as slot and
    whole-list feedback for ``policy`` (see the module docstring)."""
    from belong import surfaces
    from belong.eventlog import open_store
    from belong.state import as_of, from_store

    if window_days <= 0:
        raise ValidationError("window", f"must be positive, got {window_days}")
    log_pipe = surfaces.load(logging, "logging")
    slot = explore_slot(log_pipe)
    with open_store(store, create=False) as st:
        events = st.read_events()
    lists = logged_lists(events, log_pipe.surface, int(window_days * DAY_US))
    if not lists:
        raise ValidationError("store", f"the log has no {log_pipe.surface.value} impressions to evaluate on")
    lists.sort(key=lambda lst: (lst.ts_us, lst.request_id))
    if max_lists is not None:
        lists = lists[:max_lists]
    cut = as_of(from_store(store), lists[0].ts_us)
    log_pipe.fit(cut)
    pol = load_policy(policy, cut, like=log_pipe)
    if pol.surface is not log_pipe.surface:
        raise ValidationError("policy", f"answers {pol.surface.value}, the logged lists are "
                                        f"{log_pipe.surface.value}")
    known = set(cut.users.index)
    usable = [lst for lst in lists if lst.user_id in known]
    done = [0]

    def tick(answer: Callable[[LoggedList], PolicyAnswer]) -> Callable[[LoggedList], PolicyAnswer]:
        def run(lst: LoggedList) -> PolicyAnswer:
            done[0] += 1
            if progress is not None:
                progress(done[0], 2 * len(usable))
            return answer(lst)
        return run

    data = build(usable, tick(pipeline_policy(pol)), tick(pipeline_policy(log_pipe)), slot=slot)
    data.info = {"policy": policy, "logging": logging, "store_lists": len(lists),
                 "skipped_unknown_users": len(lists) - len(usable), "window_days": window_days, **data.info}
    return data


def evaluate_store(store: str, policy: str, *, logging: str = "communities", window_days: float = 7.0,
                   max_lists: int | None = 2000, progress: Callable[[int, int], None] | None = None,
                   ) -> dict[str, Any]:
    """``belong ope``: the evaluation policy's estimated value from the store's logged lists, every estimator with
    its ESS and largest weight, or refusals with the reason."""
    from belong.experiments.ope import evaluate_slate, evaluate_slot

    data = store_feedback(store, policy, logging=logging, window_days=window_days, max_lists=max_lists,
                          progress=progress)
    out: dict[str, Any] = {
        **data.info,
        "logged_value_at_slot": float(data.slot.reward.mean()) if data.slot is not None else None,
        "slot": {k: e.to_dict() for k, e in evaluate_slot(data.slot).items()} if data.slot is not None else None,
        "lists": {k: e.to_dict() for k, e in evaluate_slate(data.slate).items()} if data.slate is not None else None,
    }
    out["warnings"] = sorted({e["warning"] for part in ("slot", "lists") for e in (out[part] or {}).values()
                              if e["warning"]})
    return out
