"""``gated_rrf``: the people rank blend, some sources kept only where the user's own data shows they help.

A source can help one friend graph and hurt another: ``friend_embedding`` (iALS factors of the friend graph) adds
NDCG@20 on LastFM-Asia's dense, organic graph and loses it on the simulated world, where friendships form through
communities (docs/PEOPLE_RANKING.md). :meth:`GatedRRF.fit` labels lists of a fresh copy of the pipeline's candidate
stage over a validation cut carved from the *training* friend graph (:func:`gate_lists`: the cut of
:func:`belong.ranking.people_lists.build_lists`, a time cut where friendships have real times, a random cut
otherwise, and the random cut where a time cut leaves fewer than :data:`~belong.ranking.people.MIN_LISTS` lists with
a positive, as ``people_ranker`` does; only the sources' ranks, the candidate stage run on arrays). The lists
are the same with and without a gated source; only its weight changes (0 or its own). Starting from the blend with
every gated source off, each gated source in turn is kept when it raises the lists' mean NDCG@20 (gain > 0) with a
paired t-test over the lists at p < ``max_p``; otherwise its weight is 0 (the candidates only it found score 0:
after every other candidate). One interim look (``look`` lists) may stop the work early, only to drop sources
already significantly worse (a source is kept only on all the lists). The decision and its validation figures are
written into the scorer's config as ``gate`` (so ``Pipeline.to_dict``, a ``belong train`` manifest and a model
artifact carry them; loading does not fit again) and :meth:`GatedRRF.fitted` reports them. Until fitted, a gated
source counts 0: it must earn its place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import Progress, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.scorers import WeightedRRF, WeightedRRFConfig
from belong.pipeline.types import Request
from belong.ranking.dataset import TrainingLists
from belong.ranking.list_parts import check_cut_settings, sample_users
from belong.ranking.people import MIN_LISTS
from belong.ranking.people_lists import HOLDOUT_BY, hide_edges, resolve_holdout_by, time_cut, with_friends
from belong.ranking.ranker import CUTOFF
from belong.state import WorldState


class GatedRRFConfig(WeightedRRFConfig, kw_only=True, forbid_unknown_fields=True):
    gated: list[str] = []  # sources kept only where the validation lists show they help
    users: int = 3000  # validation lists at most (every `belong serve` without --models pays the fit at start)
    holdout: float = 0.2  # share of the training friendships hidden (random cut) / the latest ones (time cut)
    holdout_by: str = "auto"  # random | time | auto (time when friendship times span >= min_span_days)
    min_span_days: float = 7.0
    max_p: float = 0.01  # a kept source's NDCG@20 gain must pass a paired t-test over the lists below this
    #: one interim look after this many lists (0: none): stop and drop when every gated source is already
    #: significantly worse there (a source is only kept on all the lists)
    look: int = 1000
    seed: int = 0
    #: above this many people the gate builds no lists and every gated source stays off (0: no limit): at 1M
    #: people the 3,000 lists and the gated source's fits took about 6 minutes (docs/PEOPLE_RANKING.md)
    max_people: int = 200_000
    #: what :meth:`GatedRRF.fit` decided, per gated source: ``kept`` (1 or 0), ``ndcg_without`` / ``ndcg_with``
    #: (mean NDCG@20 of the validation lists), ``gain``, ``p`` (paired t-test), ``lists``
    gate: dict[str, dict[str, float]] = {}


def _ndcg_per_list(ranks: np.ndarray, w: np.ndarray, c: float, y: np.ndarray, items: np.ndarray, off: np.ndarray,
                   n_pos: np.ndarray, k: int = CUTOFF) -> np.ndarray:
    """NDCG@k per list of the blend ``sum_s w_s / (c + rank_s + 1)`` (ties by item, as the pipeline orders),
    every held-out positive in the ideal (a missed one counts)."""
    contrib = np.where(np.isnan(ranks), 0.0, w[None, :] / (c + np.nan_to_num(ranks) + 1.0))
    score = np.zeros(ranks.shape[0])
    for j in range(ranks.shape[1]):  # source by source, as WeightedRRF adds them
        score += contrib[:, j]
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(off.size - 1)
    for i in range(out.size):
        s, lab, it = score[off[i]:off[i + 1]], y[off[i]:off[i + 1]], items[off[i]:off[i + 1]]
        hits = lab[np.lexsort((it, -s))[:k]]
        denom = max(int(n_pos[i]), 1)
        out[i] = float((hits * disc[:hits.size]).sum() / disc[:min(denom, k)].sum())
    return out


def gate_sources(lists: TrainingLists, weights: dict[str, float], gated: list[str], c: float, max_p: float
                 ) -> dict[str, dict[str, float]]:
    """Per gated source (in order, starting from the blend with every gated source off): the lists' mean NDCG@20
    without and with it at its own weight, the gain, the paired t-test's p, and ``kept`` (gain > 0, p < max_p)."""
    from scipy.stats import ttest_rel

    names = list(lists.source_names)
    cols = [lists.feature_names.index(f"{s}_rank") for s in names]
    ranks = lists.X[:, cols].astype(np.float64)
    y = lists.y.astype(np.float64)
    off = np.r_[0, np.cumsum(lists.groups)].astype(np.int64)
    items = lists.items if lists.items is not None and lists.items.size == y.size else np.arange(y.size)
    w = np.array([0.0 if s in gated else weights.get(s, 1.0) for s in names], np.float64)
    per = _ndcg_per_list(ranks, w, c, y, items, off, lists.positives_held)
    out: dict[str, dict[str, float]] = {}
    for s in gated:
        trial = w.copy()
        trial[names.index(s)] = weights.get(s, 1.0)
        trial_per = _ndcg_per_list(ranks, trial, c, y, items, off, lists.positives_held)
        gain = float(trial_per.mean() - per.mean())
        p = float(ttest_rel(trial_per, per).pvalue) if np.any(trial_per != per) else 1.0
        p = 1.0 if not np.isfinite(p) else p
        kept = gain > 0 and p < max_p
        out[s] = {"kept": float(kept), "ndcg_without": round(float(per.mean()), 5),
                  "ndcg_with": round(float(trial_per.mean()), 5), "gain": round(gain, 5), "p": p,
                  "lists": float(per.size)}
        if kept:
            w, per = trial, trial_per
    return out


def gate_lists(state: WorldState, upstream: Callable[[], Pipeline], *, fraction: float, max_users: int, seed: int,
               by: str, min_span_days: float = 7.0, progress: Progress | None = None, batch: int = 250,
               look: int = 0, stop: Callable[[TrainingLists], bool] | None = None) -> TrainingLists:
    """Labelled candidate lists for the gate: the cut of :func:`belong.ranking.people_lists.build_lists` (time or
    random, the same users sampled), but only each source's rank per candidate (the columns ``<s>_rank``), the
    candidate stage run in batches on arrays (:meth:`Pipeline.candidate_arrays`: the candidates and ranks
    :meth:`Pipeline.candidates` gives) — no feature rows: a few times cheaper than the ranker's lists.

    The users are visited in a seeded random order; once ``look`` lists are built, ``stop(lists so far)`` may end
    the work early (``stats["stopped_at"]``): one interim look."""
    how = resolve_holdout_by(state, by, min_span_days)
    stats: dict[str, Any] = {"holdout_by": how, "holdout_fraction": fraction}
    if how == "time":
        cut, held, T = time_cut(state, fraction)
        stats["cut_us"] = T
    else:
        rest, held = hide_edges(state.friend_csr(), fraction, seed)
        cut = with_friends(state, rest)
    stage = upstream().fit(cut, candidates_only=True)
    names = [s.name for s in stage.sources]
    fn = [f"{s}_rank" for s in names]
    users = sample_users(held, max_users, seed)
    users = users[np.random.default_rng(seed + 2).permutation(users.size)]  # any prefix: a random sample
    ranks: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    items: list[np.ndarray] = []
    groups: list[int] = []
    kept: list[int] = []
    n_pos: list[int] = []

    def assemble() -> TrainingLists:
        if not groups:
            return TrainingLists(np.zeros((0, len(names)), np.float32), np.zeros(0, np.float32),
                                 np.zeros(0, np.int64), fn, names, np.zeros(0, np.int64), np.zeros(0, np.int64),
                                 {**stats, "lists": 0})
        y = np.concatenate(labels)
        n_pos_arr = np.array(n_pos, np.int64)
        found = np.array([lab.sum() for lab in labels])
        out = {**stats, "lists": len(groups), "rows": int(y.size),
               "candidate_recall": float(np.mean(found / np.maximum(n_pos_arr, 1))),
               "hidden_edges": int(sum(len(s) for s in held.values()) // 2)}
        return TrainingLists(np.vstack(ranks), y, np.array(groups, np.int64), fn, names, np.array(kept, np.int64),
                             n_pos_arr, out, items=np.concatenate(items))

    looked = False
    for lo in range(0, users.size, batch):
        chunk = users[lo:lo + batch].tolist()
        reqs = [Request(state.users.ids[u], stage.surface, k=CUTOFF, explain=False) for u in chunk]
        for u, m in zip(chunk, stage.candidate_arrays(reqs, hydrate=False), strict=True):
            if not len(m):
                continue
            ranks.append(np.where(m.ranks >= 0, m.ranks, np.nan).astype(np.float32))
            pos = held[u]
            labels.append(np.fromiter((i in pos for i in m.items.tolist()), np.float32, len(m)))
            items.append(m.items.astype(np.int64))
            groups.append(len(m))
            kept.append(u)
            n_pos.append(len(pos))
        if progress is not None:
            progress(min(lo + batch, int(users.size)), int(users.size))
        if stop is not None and look and not looked and len(groups) >= look and lo + batch < users.size:
            looked = True
            partial = assemble()
            if stop(partial):
                partial.stats["stopped_at"] = len(groups)
                return partial
    return assemble()


@register("scorer", "gated_rrf")
class GatedRRF(WeightedRRF):
    """:class:`~belong.pipeline.scorers.WeightedRRF` whose ``gated`` sources count only where :meth:`fit` found
    on a validation cut of the training friend graph that they help (people surfaces)."""

    Config = GatedRRFConfig
    config: GatedRRFConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        c = self.config
        check_cut_settings(self.name, c.holdout_by, HOLDOUT_BY, c.holdout, c.users)
        if c.look < 0:
            raise ValidationError(f"{self.name}.look", f"must be >= 0 (0: no interim look), got {c.look}")
        if not 0.0 < c.max_p <= 1.0:
            raise ValidationError(f"{self.name}.max_p", f"must be in (0, 1], got {c.max_p}")
        if c.max_people < 0:
            raise ValidationError(f"{self.name}.max_people", f"must be >= 0 (0: no limit), got {c.max_people}")
        if len(set(c.gated)) != len(c.gated):
            raise ValidationError(f"{self.name}.gated", f"names a source twice: {c.gated}")
        self.gating: dict[str, Any] = {}

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        """Decide each gated source on lists of ``upstream()`` over a validation cut of ``state``; a state too
        small for a cut keeps every gated source off (``fitted()["skipped"]`` says why)."""
        c = self.config
        # a gated source the pipeline lacks (e.g. `belong evaluate --model pipeline:people/friends_of_friends`, one
        # source alone) is not decided: it has nothing to score
        gated = [s for s in c.gated if s in self.source_weights]
        self.gating = {}
        if len(gated) < len(c.gated):
            self.gating["absent"] = [s for s in c.gated if s not in self.source_weights]
        weights = {s: WeightedRRF.weight(self, s) for s in self.source_weights}
        off = {s: {"kept": 0.0} for s in gated}
        if not gated:
            self.config = msgspec.structs.replace(c, gate={})
            return
        if 0 < c.max_people < state.n_users:
            self.gating["skipped"] = f"{state.n_users} people > max_people {c.max_people}: gated sources off"
            self.config = msgspec.structs.replace(c, gate=off)
            return

        def harmful(lists: TrainingLists) -> bool:
            """At the interim look: every gated source already significantly worse (gain < 0, p < max_p): more
            lists could only keep one by chance, so the gate stops and drops them (it never keeps early)."""
            if _lists_with_a_positive(lists) < MIN_LISTS:
                return False
            g = gate_sources(lists, weights, gated, c.c, c.max_p)
            return all(v["gain"] < 0 and v["p"] < c.max_p for v in g.values())

        try:
            lists = gate_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed,
                               by=c.holdout_by, min_span_days=c.min_span_days, progress=progress, look=c.look,
                               stop=harmful)
            found = _lists_with_a_positive(lists)
            if c.holdout_by == "auto" and lists.stats.get("holdout_by") == "time" and found < MIN_LISTS:
                lists = gate_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed,
                                   by="random", progress=progress, look=c.look,
                                   stop=harmful)  # as people_ranker: a time cut out of reach
                self.gating["holdout_fallback"] = (f"time cut: {found} lists with a positive (< {MIN_LISTS}); "
                                                   "random cut used")
        except ValidationError as e:
            self.gating["skipped"] = str(e)
            self.config = msgspec.structs.replace(c, gate=off)
            return
        found = _lists_with_a_positive(lists)
        if found < MIN_LISTS:
            self.gating["skipped"] = f"{lists.groups.size} validation lists, {found} with a positive"
            self.config = msgspec.structs.replace(c, gate=off)
            return
        self.gating.update({"lists": int(lists.groups.size), "holdout_by": lists.stats.get("holdout_by"),
                            "candidate_recall": round(float(lists.stats["candidate_recall"]), 5)})
        if "stopped_at" in lists.stats:
            self.gating["stopped_early"] = f"every gated source significantly worse after {lists.groups.size} lists"
        self.config = msgspec.structs.replace(c, gate=gate_sources(lists, weights, gated, c.c, c.max_p))

    def inactive_sources(self) -> frozenset[str]:
        """The gated sources the fit dropped: a scored run does not run them, so where the gate drops every gated
        source the answers are the blend's without them (an unfitted gate decided nothing: they run, at weight 0)."""
        g = self.config.gate
        return frozenset(s for s in self.config.gated if s in g and not g[s].get("kept", 0.0))

    def weight(self, source: str) -> float:
        w = super().weight(source)
        if source in self.config.gated and not self.config.gate.get(source, {}).get("kept", 0.0):
            return 0.0
        return w

    def fitted(self) -> dict[str, Any]:
        """The gate's decisions (``kept``: the gated sources that count) and validation figures; after loading an
        artifact, the decisions and figures its config carries."""
        g = self.config.gate
        return {**self.gating, "kept": [s for s in self.config.gated if g.get(s, {}).get("kept", 0.0)],
                "gate": {s: dict(v) for s, v in g.items()}}


def _lists_with_a_positive(lists: TrainingLists) -> int:
    if not lists.groups.size:
        return 0
    return int((np.add.reduceat(lists.y, np.r_[0, np.cumsum(lists.groups)[:-1]]) > 0).sum())
