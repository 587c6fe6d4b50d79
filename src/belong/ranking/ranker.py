"""The learned ranker: a LightGBM ranking objective for the order, binary LightGBM models for calibrated probabilities.

The order objective is ``rank_xendcg`` by default (XE-NDCG; ``lambdarank`` stays selectable: the choice is in
docs/MEASUREMENTS.md). ``score = order margin + sum_o weight_o * p_o`` over the surface's calibrated binary
objectives (``objectives = {join = 0.5, retained = 0.3, report = -2.0}`` in the scorer's TOML): ``p_join``,
``p_retained = p(retained | join)`` and ``p_report = p(join) * p(report | join)``. ``p(join)`` is fitted on the
training lists (every positive and about :data:`NEG_PER_POS` negatives per positive, weighted back); ``retained``
and ``report`` on the joined rows where :mod:`belong.ranking.dataset` found labels. An objective without enough
labels (:data:`MIN_CLASS`) is skipped with the reason in ``metrics["objectives"]["skipped"]``. Each fitted
objective is calibrated (isotonic by default) on half of its validation rows, its calibration error measured on
the other half (``metrics["calibration_by_objective"]``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from belong.errors import ValidationError
from belong.ranking.calibration import Calibrator, expected_calibration_error
from belong.ranking.dataset import TrainingLists

OBJECTIVES = ("join", "retained", "report")
ORDER_OBJECTIVES = ("rank_xendcg", "lambdarank")
NEG_PER_POS = 10  # p(join) is fitted on every positive and about this many negatives per positive
MIN_CLASS = 10  # an outcome objective needs this many rows of each class in its training and its validation part
CUTOFF = 20


def _offsets(groups: np.ndarray) -> np.ndarray:
    return np.r_[0, np.cumsum(groups)].astype(np.int64)


def list_metrics(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, n_pos: np.ndarray,
                 k: int = CUTOFF) -> dict[str, float]:
    """Mean recall@k and NDCG@k over lists, held-out positives as the denominator (missed ones count)."""
    off = _offsets(groups)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    rec, ndcg = [], []
    for i in range(groups.size):
        s, lab = scores[off[i]:off[i + 1]], y[off[i]:off[i + 1]]
        order = np.lexsort((np.arange(s.size), -s))[:k]
        hits = lab[order]
        denom = max(int(n_pos[i]), 1)
        rec.append(hits.sum() / min(denom, k))
        ideal = disc[: min(denom, k)].sum()
        ndcg.append(float((hits * disc[: hits.size]).sum() / ideal))
    return {f"recall@{k}": float(np.mean(rec)), f"ndcg@{k}": float(np.mean(ndcg))}


def ndcg_per_list(scores: np.ndarray, y: np.ndarray, groups: np.ndarray, n_pos: np.ndarray,
                  k: int = CUTOFF) -> np.ndarray:
    """NDCG@k of each list (as :func:`list_metrics` averages it)."""
    off = _offsets(groups)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    out = np.zeros(groups.size)
    for i in range(groups.size):
        s, lab = scores[off[i]:off[i + 1]], y[off[i]:off[i + 1]]
        hits = lab[np.lexsort((np.arange(s.size), -s))[:k]]
        out[i] = float((hits * disc[: hits.size]).sum() / disc[: min(max(int(n_pos[i]), 1), k)].sum())
    return out


def blend_of_ranks(X: np.ndarray, source_names: Sequence[str], weights: dict[str, float], c: float) -> np.ndarray:
    """The rank blend ``sum_s w_s / (c + rank_s + 1)`` of feature rows (:func:`belong.ranking.dataset.feature_names`:
    ``<s>_rank`` in column ``2 j + 1``, NaN where the source did not find the item), each source's term added in
    source order as the ``weighted_rrf`` scorer adds them."""
    total = np.zeros(X.shape[0])
    for j, s in enumerate(source_names):
        rank = X[:, 2 * j + 1].astype(np.float64)
        has = ~np.isnan(rank)
        if has.any():
            term = np.zeros(X.shape[0])
            term[has] = weights.get(s, 1.0) / (c + rank[has] + 1)
            total += term
    return total


def check_guard(name: str, guard_p: float, guard_folds: int) -> None:
    """A scorer's guard settings: ``guard_p`` in (0, 1], ``guard_folds`` 0 (the split's test) or >= 2; a bad one
    is a :class:`ValidationError` naming it."""
    if not 0.0 < guard_p <= 1.0:
        raise ValidationError(f"{name}.guard_p", f"must be in (0, 1], got {guard_p}")
    if guard_folds < 0 or guard_folds == 1:
        raise ValidationError(f"{name}.guard_folds", f"must be 0 (the validation split) or >= 2, got {guard_folds}")


def guard_test(ranker: np.ndarray, blend: np.ndarray) -> dict[str, float]:
    """Paired comparison of per-list NDCG@20 (ranker - blend): the mean difference, the two-sided paired t-test's
    p-value and the one-sided one for "the ranker is better" (``p_better``); 1.0 where the lists do not differ."""
    from scipy import stats

    d = ranker - blend
    differ = d.size > 1 and bool(np.any(d != d[0]))
    two = float(stats.ttest_rel(ranker, blend).pvalue) if differ else 1.0
    one = float(stats.ttest_rel(ranker, blend, alternative="greater").pvalue) if differ else 1.0
    return {"lists": int(d.size), "ndcg_diff": float(d.mean()) if d.size else 0.0,
            "t_pvalue": two if np.isfinite(two) else 1.0, "p_better": one if np.isfinite(one) else 1.0}


def feature_set_change(manifest: dict[str, Any]) -> str | None:
    """How a saved ranker's features (its manifest part) differ from what this version computes; None if equal."""
    if manifest.get("kind") == "people":
        from belong.ranking.people_lists import feature_names
    elif manifest.get("kind") == "content":
        from belong.ranking.content_lists import feature_names
    else:
        from belong.ranking.dataset import feature_names

    saved, expected = list(manifest["features"]), feature_names(manifest["sources"])
    if saved == expected:
        return None
    new = sorted(set(expected) - set(saved))
    return (f"{len(saved)} features; this version computes {len(expected)}"
            + (f", new: {', '.join(new[:4])}" if new else ""))


EARLY_STOPPING = 30  # rounds without a better validation NDCG


def train_order(params: dict[str, Any], train: tuple, valid: tuple | None, rounds: int,
                feature_names: list[str]) -> lgb.Booster:
    """The order model on ``train = (X, y, groups)``, early-stopped on ``valid`` (``None``: exactly ``rounds``
    rounds, in this process): in this process, or by the batch engine's trainer when one is installed
    (:mod:`belong.ranking.runners`: Ray Train's LightGBMTrainer)."""
    from belong.ranking.runners import order_trainer

    trainer = order_trainer()
    if trainer is not None and valid is not None:
        return trainer(params, train, valid, rounds, feature_names)
    dtr = lgb.Dataset(train[0], train[1], group=train[2], feature_name=feature_names, free_raw_data=False)
    if valid is None:
        return lgb.train(params, dtr, rounds)
    dva = lgb.Dataset(valid[0], valid[1], group=valid[2], reference=dtr)
    return lgb.train(params, dtr, rounds, valid_sets=[dva],
                     callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)])


class Ranker:
    """Fitted boosters, calibrator, feature names and validation figures; :meth:`score` for requests."""

    def __init__(self, *, num_leaves: int = 31, learning_rate: float = 0.05, rounds: int = 300,
                 min_data_in_leaf: int = 50, seed: int = 0, calibration: str = "isotonic",
                 objectives: dict[str, float] | None = None, threads: int = 0, order: str = "rank_xendcg") -> None:
        if order not in ORDER_OBJECTIVES:
            raise ValidationError("order", f"must be one of {', '.join(ORDER_OBJECTIVES)}, got {order!r}")
        self.params: dict[str, Any] = {"num_leaves": num_leaves, "learning_rate": learning_rate, "rounds": rounds,
                       "min_data_in_leaf": min_data_in_leaf, "seed": seed, "calibration": calibration,
                       "order": order}
        # deterministic + row-wise histograms: the same boosters whatever the thread count (0: every core)
        self.threads = threads or (os.cpu_count() or 1)
        self.objectives = dict(objectives or {})
        bad = sorted(set(self.objectives) - set(OBJECTIVES))
        if bad:
            raise ValidationError("objectives", f"unknown objective {bad[0]!r}; known: {', '.join(OBJECTIVES)}")
        self.order: lgb.Booster | None = None
        self.binary: dict[str, lgb.Booster] = {}
        self.calibrators: dict[str, Calibrator] = {}
        self.feature_names: list[str] = []
        self.source_names: list[str] = []
        self.metrics: dict[str, Any] = {}
        #: whose features: ``communities`` (:mod:`belong.ranking.dataset`), ``people`` (:mod:`.people_lists`) or
        #: ``content`` (:mod:`.content_lists`)
        self.kind = "communities"

    def _lgb_params(self, objective: str) -> dict[str, Any]:
        p = self.params
        out = {"objective": objective, "num_leaves": p["num_leaves"], "learning_rate": p["learning_rate"],
               "min_data_in_leaf": p["min_data_in_leaf"], "feature_fraction": 0.9, "bagging_fraction": 0.8,
               "bagging_freq": 1, "seed": p["seed"], "num_threads": self.threads, "deterministic": True,
               "force_row_wise": True, "verbosity": -1}
        if objective in ORDER_OBJECTIVES:
            out.update({"eval_at": [CUTOFF], "metric": "ndcg"})
            if objective == "lambdarank":
                out["lambdarank_truncation_level"] = 2 * CUTOFF
        else:
            out["metric"] = "binary_logloss"
        return out

    def fit(self, lists: TrainingLists, blend: tuple[dict[str, float], float] | None = None,
            early_stopping: bool = True) -> Ranker:
        """Fit on 80% of the lists (by user); early-stop, calibrate and measure on the other 20%.

        ``blend = (source weights, c)``: the surface's rank blend, computed from the rank columns, is measured on the
        same validation lists (``metrics["blend"]``) and compared with the served score list by list
        (``metrics["guard"]``: mean NDCG@20 difference, paired t-test), for a scorer that keeps the blend unless
        the ranker beats it (lists carrying a ``blend`` column: that column is the blend). Those validation lists
        also chose the boosting rounds, so that comparison leans towards the ranker: :meth:`cross_fitted_guard`
        replaces it with one over every list. ``early_stopping = False``: the order model takes exactly ``rounds``
        rounds."""
        if lists.groups.size < 10 or lists.y.sum() == 0:
            raise ValidationError("training", f"too little data to train a ranker ({lists.groups.size} lists, "
                                  f"{int(lists.y.sum())} positives); need >= 10 lists with positives")
        self.feature_names, self.source_names = list(lists.feature_names), list(lists.source_names)
        rng = np.random.default_rng(self.params["seed"])
        n = lists.groups.size
        is_valid = np.zeros(n, bool)
        is_valid[rng.choice(n, max(2, n // 5), replace=False)] = True
        off = _offsets(lists.groups)
        row_valid = np.repeat(is_valid, lists.groups)
        tr, va = ~row_valid, row_valid
        Xtr, ytr, Xva, yva = lists.X[tr], lists.y[tr], lists.X[va], lists.y[va]
        gtr, gva = lists.groups[~is_valid], lists.groups[is_valid]
        self.order = train_order(self._lgb_params(self.params["order"]), (Xtr, ytr, gtr),
                                 (Xva, yva, gva) if early_stopping else None, self.params["rounds"],
                                 self.feature_names)
        # graded labels (content: 2 reaction, 1 view) order the lists; p(join) and the figures read label > 0
        ytr, yva = (ytr > 0).astype(np.float32), (yva > 0).astype(np.float32)
        # p(join): binary model, calibrated on half of the validation lists, ECE measured on the other half
        # negatives beyond NEG_PER_POS per positive are subsampled (weighted back up): the calibrator, fitted on
        # untouched validation rows, maps the raw scores to probabilities either way
        neg = np.flatnonzero(ytr == 0)
        keep_rate = min(1.0, NEG_PER_POS * max(int((ytr > 0).sum()), 1) / max(neg.size, 1))
        keep = (ytr > 0) | (rng.random(ytr.size) < keep_rate)
        dbin = lgb.Dataset(Xtr[keep], ytr[keep], weight=np.where(ytr[keep] > 0, 1.0, 1.0 / keep_rate),
                           feature_name=self.feature_names)
        self.binary["join"] = lgb.train(self._lgb_params("binary"), dbin, max(50, self.order.best_iteration or 50))
        half = rng.random(yva.size) < 0.5  # rows: calibration needs many, not whole lists
        raw = self.binary["join"].predict(Xva)
        cal = Calibrator(self.params["calibration"]).fit(raw[half], yva[half])
        self.calibrators["join"] = cal
        test = ~half if (~half).any() else half
        calibration = {"join": {"method": cal.method,
                                "ece_before": expected_calibration_error(raw[test], yva[test]),
                                "ece_after": expected_calibration_error(cal.predict(raw[test]), yva[test])}}
        skipped = self._fit_outcomes(lists, tr, va, rng, calibration)
        # validation figures: the ranker against each source alone on the same held-out lists
        valid_idx = np.flatnonzero(is_valid)
        Xv_rows = np.concatenate([np.arange(off[i], off[i + 1]) for i in valid_idx])
        ys, nps = (lists.y[Xv_rows] > 0).astype(np.float32), lists.positives_held[valid_idx]
        per_source = {}
        for j, s in enumerate(self.source_names):
            rank = lists.X[Xv_rows, 2 * j + 1]
            found = ~np.isnan(rank)  # what the source did not find cannot count as its hit
            per_source[s] = list_metrics(np.where(found, -rank, -1e9), ys * found, gva, nps)
        ranked = list_metrics(np.asarray(self.order.predict(Xva)), ys, gva, nps)
        gain = self.order.feature_importance("gain")
        self.metrics = {
            "lists": lists.stats, "validation_lists": int(is_valid.sum()),
            "best_iteration": int(self.order.best_iteration or self.params["rounds"]),
            "ranker": ranked, "sources": per_source,
            "calibration": calibration["join"], "calibration_by_objective": calibration,
            "objectives": {"fitted": sorted(self.binary, key=OBJECTIVES.index), "weights": self.objectives,
                           "used": sorted((o for o in self.objectives if o in self.binary and self.objectives[o]),
                                          key=OBJECTIVES.index),
                           "skipped": skipped},
            "feature_importance": {f: round(float(g), 3) for f, g in
                                   sorted(zip(self.feature_names, gain, strict=True), key=lambda t: -t[1])},
        }
        if "blend" in self.feature_names or blend is not None:
            # the surface's rank blend (a column of the lists, else from the rank columns) against the served score
            # (order + objectives)
            b = self.blend_scores(Xva, blend)
            served = self.score(Xva)
            self.metrics["blend"] = list_metrics(b, ys, gva, nps)
            self.metrics["served"] = list_metrics(served, ys, gva, nps)
            self.metrics["guard"] = guard_test(ndcg_per_list(served, ys, gva, nps), ndcg_per_list(b, ys, gva, nps))
        return self

    def blend_scores(self, X: np.ndarray, blend: tuple[dict[str, float], float] | None) -> np.ndarray:
        """The surface's rank blend of feature rows: the ``blend`` column where the lists carry one (people,
        content), else :func:`blend_of_ranks` with ``blend = (source weights, c)``."""
        if "blend" in self.feature_names:
            return X[:, self.feature_names.index("blend")].astype(np.float64)
        assert blend is not None
        return blend_of_ranks(X, self.source_names, blend[0], blend[1])

    def out_of_fold(self, lists: TrainingLists, folds: int) -> np.ndarray:
        """The served score of every row from a ranker that never saw its list: the lists are dealt into ``folds``
        folds at random (seeded), and for each fold a ranker with these settings — its order model taking this
        fitted ranker's number of rounds (no early stopping: a fifth of the boosting), its own split for the
        calibration — is fitted on the other folds' lists and scores the fold's rows. A fold left with too little
        to fit on raises the fit's :class:`ValidationError`."""
        assert self.order is not None
        n = lists.groups.size
        fold = np.random.default_rng(self.params["seed"] + 1).permutation(n) % folds
        row_fold = np.repeat(fold, lists.groups)
        out = np.zeros(lists.y.size, np.float64)
        params = {**self.params, "rounds": int(self.order.best_iteration or self.params["rounds"])}
        for k in range(folds):
            r = Ranker(**params, objectives=self.objectives, threads=self.threads)
            r.kind = self.kind
            r.fit(lists.subset(fold != k), early_stopping=False)
            at = row_fold == k
            out[at] = r.score(lists.X[at])
        return out

    def cross_fitted_guard(self, lists: TrainingLists, blend: tuple[dict[str, float], float] | None,
                           folds: int) -> None:
        """``metrics["guard"]`` from :meth:`out_of_fold` scores over every list against the blend (the split's
        test kept as ``metrics["guard_split"]``); where a fold cannot be fitted, the split's test stays the guard and
        ``metrics["guard"]["folds_skipped"]`` says why. Called after :meth:`fit` with the same lists and blend."""
        split = self.metrics["guard"]
        try:
            oof = self.out_of_fold(lists, folds)
        except ValidationError as exc:
            self.metrics["guard"] = {**split, "folds_skipped": str(exc)}
            return
        y = (lists.y > 0).astype(np.float32)
        b = self.blend_scores(lists.X, blend)
        g = guard_test(ndcg_per_list(oof, y, lists.groups, lists.positives_held),
                       ndcg_per_list(b, y, lists.groups, lists.positives_held))
        self.metrics["guard_split"] = split
        self.metrics["guard"] = {**g, "folds": folds}

    def _fit_outcomes(self, lists: TrainingLists, tr: np.ndarray, va: np.ndarray, rng: np.random.Generator,
                      calibration: dict[str, Any]) -> dict[str, str]:
        """Fit and calibrate ``retained`` and ``report`` on the joined rows that have their label; returns the
        objectives left out, with the reason."""
        skipped: dict[str, str] = {}
        joined = lists.y > 0
        for name in OBJECTIVES[1:]:
            lab = lists.labels.get(name)
            if lab is None:
                skipped[name] = lists.label_notes.get(name, "no labels in the training lists")
                continue
            known = joined & ~np.isnan(lab)
            counts = {part: (int((lab[known & m] == 1).sum()), int((lab[known & m] == 0).sum()))
                      for part, m in (("train", tr), ("validation", va))}
            if min(min(c) for c in counts.values()) < MIN_CLASS:
                skipped[name] = (f"too few labels of one class (positive, negative: train {counts['train']}, "
                                 f"validation {counts['validation']}; need >= {MIN_CLASS} each)")
                continue
            m_tr, m_va = known & tr, known & va
            rounds = max(30, min(200, int(m_tr.sum()) // 50))
            self.binary[name] = lgb.train(self._lgb_params("binary"),
                                          lgb.Dataset(lists.X[m_tr], lab[m_tr], feature_name=self.feature_names),
                                          rounds)
            raw, yv = self.binary[name].predict(lists.X[m_va]), lab[m_va]
            half = rng.random(yv.size) < 0.5
            test = ~half if (~half).any() else half
            cal = self.calibrators[name] = Calibrator(self.params["calibration"]).fit(raw[half], yv[half])
            calibration[name] = {"method": cal.method, "rows": int(m_tr.sum() + m_va.sum()),
                                 "positive_rate": float(lab[known].mean()),
                                 "ece_before": expected_calibration_error(raw[test], yv[test]),
                                 "ece_after": expected_calibration_error(cal.predict(raw[test]), yv[test])}
        for name in self.objectives:
            if name not in self.binary and name not in skipped:
                skipped[name] = "not fitted"
        return skipped

    def _matrix(self, X: np.ndarray) -> np.ndarray:
        if X.shape[1] != len(self.feature_names):
            raise ValidationError("features", f"expected {len(self.feature_names)} columns, got {X.shape[1]}")
        return X

    def score(self, X: np.ndarray) -> np.ndarray:
        """The surface's combined score per row (higher is better)."""
        return self._score(X, False)[0]

    def score_lists(self, mats: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`score` of each list's feature rows, with one prediction for them all (trees score each row alone:
        the same scores as list by list)."""
        bounds = np.cumsum([0, *(m.shape[0] for m in mats)])
        if bounds[-1] == 0:
            return [np.zeros(0) for _ in mats]
        scores = self.score(np.vstack(mats))
        return [scores[bounds[i]:bounds[i + 1]] for i in range(len(mats))]

    def score_with_join(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(:meth:`score`, calibrated ``p(join)``) per row, predicting ``p(join)`` once when the score uses it."""
        out, p_join = self._score(X, True)
        assert p_join is not None
        return out, p_join

    def _score(self, X: np.ndarray, join: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """The score and (``join``, or where the score predicts it anyway) ``p(join)``; the score alone predicts
        no objective it does not weigh."""
        if self.order is None:
            raise RuntimeError("ranker: call fit() or load() first")
        if X.shape[0] == 0:
            return np.zeros(0, np.float64), np.zeros(0, np.float64)
        X = self._matrix(X)
        out = self.order.predict(X, num_iteration=self.order.best_iteration or None)
        p_join = None
        for name, w in self.objectives.items():
            if name in self.binary and w:
                p = self.probability(X, name)
                if name == "join":
                    p_join = p
                out = out + w * p
        if join and p_join is None:
            p_join = self.probability(X)
        return np.asarray(out, np.float64), p_join

    def _calibrated(self, X: np.ndarray, objective: str) -> np.ndarray:
        raw = np.asarray(self.binary[objective].predict(X))
        cal = self.calibrators.get(objective)
        return cal.predict(raw) if cal is not None else raw

    def probability(self, X: np.ndarray, objective: str = "join") -> np.ndarray:
        """Calibrated probability of ``objective`` per row: ``p(join)``, ``p(retained | join)``, and for
        ``report`` the unconditional ``p(join) * p(report | join)``."""
        X = self._matrix(X)
        p = self._calibrated(X, objective)
        return p * self._calibrated(X, "join") if objective == "report" else p

    # ------------------------------------------------------------------------------------------- files
    def save(self, root: Path, folder: str = "") -> dict[str, Any]:
        """Write the boosters (LightGBM text) and calibrators (their arrays, ``.npz``) under ``root/folder``;
        returns the manifest part, its file names relative to ``root``."""
        assert self.order is not None
        (root / folder).mkdir(parents=True, exist_ok=True)
        prefix = f"{folder}/" if folder else ""
        files = {"order": f"{prefix}ranker_order.txt"}
        self.order.save_model(str(root / files["order"]))
        for name, b in self.binary.items():
            files[name] = f"{prefix}ranker_{name}.txt"
            b.save_model(str(root / files[name]))
        calibrators = {}
        for name, cal in self.calibrators.items():
            calibrators[name] = {"method": cal.method, "file": f"{prefix}calibrator_{name}.npz"}
            np.savez(root / calibrators[name]["file"], allow_pickle=False, **cal.arrays)
        return {"files": files, "calibrators": calibrators, "params": self.params,
                "objectives": self.objectives, "features": self.feature_names, "sources": self.source_names,
                "metrics": self.metrics, **({"kind": self.kind} if self.kind != "communities" else {})}

    @classmethod
    def load(cls, root: Path, manifest: dict[str, Any]) -> Ranker:
        """The ranker :meth:`save` wrote (file names relative to ``root``); nothing is unpickled."""
        stale = feature_set_change(manifest)
        if stale:
            raise ValidationError("artifact", f"{root} was trained on another feature set ({stale}): "
                                  "retrain it with belong train")
        r = cls(**{k: v for k, v in manifest["params"].items()}, objectives=manifest["objectives"])
        files = dict(manifest["files"])
        r.order = lgb.Booster(model_file=str(root / files.pop("order")))
        r.binary = {k: lgb.Booster(model_file=str(root / f)) for k, f in files.items()}
        for name, cal in manifest["calibrators"].items():
            with np.load(root / cal["file"], allow_pickle=False) as z:
                r.calibrators[name] = Calibrator(cal["method"], {k: z[k] for k in z.files})
        r.feature_names, r.source_names = list(manifest["features"]), list(manifest["sources"])
        r.metrics = manifest.get("metrics", {})
        r.kind = manifest.get("kind", "communities")
        return r
