"""``people_two_sided``: people you may know ranked by ``p(user sends a request) x p(the other accepts)``.

Two models, both fitted on a time cut of the *training* events (:func:`belong.state.as_of` at ``T``, the
``1 - holdout`` quantile of the friendship times; the evaluation's test events are never seen):

* ``p(request)``: the people ranker's lists (:func:`belong.ranking.people_lists.build_lists`: the candidate stage
  of a fresh copy of the pipeline fitted on the cut, the same features) labelled 1 where the pair exchanged a
  ``friend_request`` (either side) at or after ``T``; the calibrated binary LightGBM model of
  :class:`~belong.ranking.ranker.Ranker` (its raw probability: an isotonic step would tie the order);
* ``p(accept | request)``: an L2 logistic regression (:func:`fit_logistic`, Newton steps) on the requests sent at
  or after ``T`` (and at least ``settle_days`` before the state's end, so each had time for an answer), labelled 1
  where the receiver accepted and the friendship was not removed later (``friend_remove``: a negative of lasting
  friendship), with pair features read from the cut (:data:`ACCEPT_FEATURES`: mutual friends, shared communities,
  both people's activity and friend counts, locale match, same age group, teen-adult pair).

score = ``log p(request) + log p(accept)`` (the product's order). The age features stay inside: an answer carries
only ``p_request``, ``p_accept`` and their product ``p_join`` (with ``explain``; the API's access rules apply as
to every feature row). The accept model is a handful of numbers kept in the ranker's manifest part (JSON, data
only); the request model is the ranker's own LightGBM text.

Where the events hold no requests (friendship graphs such as hetrec-lastfm or LastFM-Asia), or the cut finds too
few, the scorer degrades to the one-sided ``people_ranker`` (``p(edge)``, its lists and guard): the figures say
``two_sided: off`` and why. With ``guard`` the blend's order is kept where the product does not beat it on the
ranker's own validation lists, measured on the friendships formed (NDCG@20).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import Progress, register
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import DAY_US
from belong.ranking.people import PeopleRanker, PeopleRankerConfig
from belong.ranking.people_lists import UNKNOWN, build_lists, feature_matrix, resolve_holdout_by
from belong.ranking.ranker import list_metrics
from belong.state import WorldState

ACCEPT_FEATURES = ("log_mutual_friends", "log_shared_communities", "log_activity_sender", "log_activity_receiver",
                   "log_degree_sender", "log_degree_receiver", "locale_match", "same_age_group", "teen_adult")
MIN_REQUESTS = 50  # requests (with each answer at least 10 times) needed to fit p(accept)


class TwoSidedConfig(PeopleRankerConfig, kw_only=True, forbid_unknown_fields=True):
    settle_days: float = 3.0  # requests younger than this at the state's end are left out of p(accept)
    l2: float = 1.0  # ridge penalty of the logistic regression (standardised features)


def friend_events(state: WorldState) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per type (friend_request, friend_accept, friend_remove): (actor, target, ts) as user indices of ``state``,
    up to its ``now``; empty arrays where the source holds no such events (an interaction matrix)."""
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    out = dict.fromkeys(("friend_request", "friend_accept", "friend_remove"), empty)
    events = getattr(state.source, "events", None)
    if events is None or getattr(events, "num_rows", 0) == 0:
        return out
    import pyarrow.compute as pc

    index = state.users.index
    for t in out:
        sel = events.filter(pc.and_(pc.equal(events.column("type"), t),
                                    pc.equal(events.column("target_kind"), "user")))
        if sel.num_rows == 0:
            continue
        ts = sel.column("ts_us").to_numpy().astype(np.int64)
        a = np.fromiter((index.get(x, -1) for x in sel.column("actor").to_pylist()), np.int64, sel.num_rows)
        b = np.fromiter((index.get(x, -1) for x in sel.column("target").to_pylist()), np.int64, sel.num_rows)
        ok = (a >= 0) & (b >= 0) & (ts <= state.now_us if state.now_us > 0 else True)
        out[t] = (a[ok], b[ok], ts[ok])
    return out


def request_outcomes(ev: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], lo_us: int, hi_us: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sender, receiver, label) of the requests sent in ``[lo_us, hi_us)``: 1 where the pair's friendship was
    accepted after the request and not removed after that, else 0 (unanswered, declined, or removed)."""
    a, b, ts = ev["friend_request"]
    sel = (ts >= lo_us) & (ts < hi_us)
    a, b, ts = a[sel], b[sel], ts[sel]
    n = int(max(a.max(initial=-1), b.max(initial=-1), *(x.max(initial=-1) for k in ("friend_accept", "friend_remove")
                                                        for x in ev[k][:2]))) + 1

    def key(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.minimum(x, y) * n + np.maximum(x, y)

    def last(kind: str) -> dict[int, int]:
        x, y, t = ev[kind]
        out: dict[int, int] = {}
        for k, tt in zip(key(x, y).tolist(), t.tolist(), strict=True):
            out[k] = max(out.get(k, tt), tt)
        return out

    acc, rem = last("friend_accept"), last("friend_remove")
    label = np.zeros(a.size, np.float64)
    for i, (k, t) in enumerate(zip(key(a, b).tolist(), ts.tolist(), strict=True)):
        t_acc = acc.get(k)
        if t_acc is not None and t_acc >= t and not rem.get(k, -1) > t_acc:
            label[i] = 1.0
    return a, b, label


def accept_features(state: WorldState, sender: np.ndarray, receiver: np.ndarray) -> np.ndarray:
    """One float64 row per (sender, receiver) pair of :data:`ACCEPT_FEATURES`, read from ``state``."""
    from belong.ranking.people_lists import _graph

    F, deg, M, _ = _graph(state)
    n = F.shape[0]
    s, r = np.minimum(sender, n - 1), np.minimum(receiver, n - 1)
    mutual = np.asarray(F[s].multiply(F[r]).sum(axis=1)).ravel()
    shared = np.asarray(M[s].multiply(M[r]).sum(axis=1)).ravel() if M.shape[0] and M.shape[1] else \
        np.zeros(s.size)
    act = np.diff(M.indptr).astype(np.float64) if M.shape[0] else np.zeros(n)
    E = state.engagement_csr() if state.n_content else None
    if E is not None and E.shape[0]:
        act = act + np.diff(E.indptr)[: act.size] if E.shape[0] >= act.size else act
    users = state.users
    loc = np.array([str(x).lower() for x in users.locale], dtype=object)
    age = np.array([str(x).lower() for x in users.age_group], dtype=object)
    known_loc = ~np.isin(loc[s], UNKNOWN) & ~np.isin(loc[r], UNKNOWN)
    known_age = ~np.isin(age[s], UNKNOWN) & ~np.isin(age[r], UNKNOWN)
    teen_adult = ((age[s] == "teen") & (age[r] == "adult")) | ((age[s] == "adult") & (age[r] == "teen"))
    return np.column_stack([
        np.log1p(mutual), np.log1p(shared), np.log1p(act[s]), np.log1p(act[r]), np.log1p(deg[s]), np.log1p(deg[r]),
        np.where(known_loc, (loc[s] == loc[r]).astype(np.float64), 0.5),
        np.where(known_age, (age[s] == age[r]).astype(np.float64), 0.5),
        teen_adult.astype(np.float64),
    ]).astype(np.float64)


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> dict[str, list[float]]:
    """L2-penalised logistic regression by Newton steps on standardised columns (the intercept unpenalised):
    ``{"mean", "scale", "coef", "intercept"}`` as plain lists (JSON)."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    Z = np.column_stack([np.ones(len(X)), (X - mean) / scale])
    w = np.zeros(Z.shape[1])
    pen = np.full(Z.shape[1], l2)
    pen[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Z @ w)))
        grad = Z.T @ (p - y) + pen * w
        H = (Z * (p * (1 - p))[:, None]).T @ Z + np.diag(pen) + 1e-9 * np.eye(Z.shape[1])
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return {"mean": mean.tolist(), "scale": scale.tolist(), "coef": w[1:].tolist(), "intercept": [float(w[0])]}


def predict_logistic(model: dict[str, list[float]], X: np.ndarray) -> np.ndarray:
    z = ((X - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["coef"]) \
        + model["intercept"][0]
    return 1.0 / (1.0 + np.exp(-z))


def _valid_lists(n: int, seed: int) -> np.ndarray:
    """The lists :meth:`Ranker.fit` holds out for validation (the same seeded draw)."""
    rng = np.random.default_rng(seed)
    is_valid = np.zeros(n, bool)
    is_valid[rng.choice(n, max(2, n // 5), replace=False)] = True
    return is_valid


@register("scorer", "people_two_sided")
class TwoSidedPeopleRanker(PeopleRanker):
    """score = log p(request) + log p(accept | request); one-sided ``people_ranker`` where there are no requests."""

    Config = TwoSidedConfig
    config: TwoSidedConfig

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        if self.config.settle_days < 0:
            raise ValidationError(f"{self.name}.settle_days", f"must be >= 0, got {self.config.settle_days}")
        if self.config.l2 < 0:
            raise ValidationError(f"{self.name}.l2", f"must be >= 0, got {self.config.l2}")

    def accept_model(self) -> dict[str, Any] | None:
        m = self.ranker.metrics.get("two_sided", {}) if self.ranker is not None else {}
        return m.get("accept_model") if m.get("on") else None

    def fit(self, state: WorldState, upstream: Callable[[], Pipeline], progress: Progress | None = None) -> None:
        c = self.config
        ev = friend_events(state)
        why = None
        if ev["friend_request"][0].size == 0:
            why = "no friend_request events"
        elif resolve_holdout_by(state, c.holdout_by, c.min_span_days) != "time":
            why = "friendship times do not allow a time cut"
        if why is None:
            cut_T: dict[str, Any] = {}

            def requested(cut: WorldState, T: int) -> dict[int, set[int]]:
                cut_T.update(cut=cut, T=T)
                a, b, ts = ev["friend_request"]
                held: dict[int, set[int]] = {}
                for x, y in zip(a[ts >= T].tolist(), b[ts >= T].tolist(), strict=True):
                    held.setdefault(x, set()).add(y)
                    held.setdefault(y, set()).add(x)
                return held

            lists = build_lists(state, upstream, fraction=c.holdout, max_users=c.users, seed=c.seed, by="time",
                                min_span_days=c.min_span_days, progress=progress, weights=self.source_weights,
                                positives=requested)
            end = state.now_us if state.now_us > 0 else int(ev["friend_request"][2].max()) + 1
            s, r, lab = request_outcomes(ev, cut_T["T"], end - int(c.settle_days * DAY_US))
            if lists.groups.size < 10 or lists.y.sum() == 0:
                why = f"too few request lists ({lists.groups.size})"
            elif s.size < MIN_REQUESTS or min(lab.sum(), (1 - lab).sum()) < 10:
                why = f"too few answered requests after the cut ({s.size}, {int(lab.sum())} lasting)"
        if why is not None:
            super().fit(state, upstream, progress)
            assert self.ranker is not None
            self.ranker.metrics["two_sided"] = {"on": False, "why": why}
            return
        self.ranker = self.new_ranker().fit(lists)
        Xa = accept_features(cut_T["cut"], s, r)
        model: dict[str, Any] = {**fit_logistic(Xa, lab, c.l2), "features": list(ACCEPT_FEATURES)}
        # figures on the ranker's validation lists, labelled with the friendships formed after the cut
        is_valid = _valid_lists(lists.groups.size, c.seed)
        off = np.r_[0, np.cumsum(lists.groups)]
        rows = np.concatenate([np.arange(off[i], off[i + 1]) for i in np.flatnonzero(is_valid)])
        g = lists.groups[is_valid]
        y_edge, n_edge = lists.labels["edge"][rows], lists.labels["edge_n"][off[:-1][is_valid]]
        with_edge = n_edge > 0
        sub = np.repeat(with_edge, g)
        X = lists.X[rows]
        p_req = np.clip(self.ranker.binary["join"].predict(X), 1e-9, 1.0)
        p_acc = self._p_accept(model, lists.users[is_valid], lists.items[rows], g, cut_T["cut"])
        assert self.ranker.order is not None
        scores = {"product": np.log(p_req) + np.log(p_acc), "p_request": p_req, "order": self.ranker.order.predict(X),
                  "blend": X[:, lists.feature_names.index("blend")]}
        figures = {k: list_metrics(v[sub], y_edge[sub], g[with_edge], n_edge[with_edge]) for k, v in scores.items()}
        self.ranker.metrics["two_sided"] = {
            "on": True, "accept_model": model, "cut_us": int(cut_T["T"]),
            "requests": int(s.size), "lasting_rate": float(lab.mean()),
            "validation_on_friendships": figures, "validation_lists_with_friendship": int(with_edge.sum())}

    @staticmethod
    def _p_accept(model: dict[str, Any], users: np.ndarray, items: np.ndarray, groups: np.ndarray,
                  state: WorldState) -> np.ndarray:
        return np.clip(predict_logistic(model, accept_features(state, np.repeat(users, groups), items)), 1e-9, 1.0)

    def uses_blend(self) -> bool:
        model = self.accept_model()
        if model is None:
            return super().uses_blend()
        fig = self.ranker.metrics["two_sided"]["validation_on_friendships"]  # type: ignore[union-attr]
        return bool(self.config.guard and fig["product"]["ndcg@20"] <= fig["blend"]["ndcg@20"])

    def score(self, request: Request, state: WorldState, cands: list[Merged]) -> np.ndarray:
        model = self.accept_model()
        if model is None:
            return super().score(request, state, cands)
        assert self.ranker is not None
        guarded = self.uses_blend()
        if guarded and not (request.explain and cands):
            return self.blend(cands)
        if not cands:
            return np.zeros(0, np.float64)
        X = feature_matrix(self.ranker.source_names, request, state, cands, self.source_weights)
        p_req = np.clip(self.ranker.binary["join"].predict(X), 1e-9, 1.0)
        u = state.profile(request).idx
        items = np.fromiter((m.item for m in cands), np.int64, len(cands))
        if u is None or u >= state.n_users:  # a brand-new user: nothing to read about the sender
            p_acc = np.full(len(cands), float(1.0 / (1.0 + np.exp(-model["intercept"][0]))))
        else:
            known = items < state.n_users
            p_acc = np.full(len(cands), 1e-9)
            if known.any():
                p_acc[known] = self._p_accept(model, np.array([u]), items[known], np.array([int(known.sum())]),
                                              state)
        scores = np.log(p_req) + np.log(p_acc)
        if request.explain:
            for m, a, b in zip(cands, p_req.tolist(), p_acc.tolist(), strict=True):
                m.features.update(p_request=round(float(a), 6), p_accept=round(float(b), 6),
                                  p_join=round(float(a * b), 6))
        return self.blend(cands) if guarded else scores

    def fitted(self) -> dict[str, Any]:
        out = super().fitted()
        if out and self.accept_model() is not None:
            out["order_used"] = "blend" if self.uses_blend() else "p_request x p_accept"
        return out
