"""Pieces the people and content rankers' training lists share (source columns, gaps, user sampling, the candidate
loop, the empty result). Kept apart from :mod:`belong.ranking.learned`, which imports the ranker: the ranker reads
the list modules' feature names, so these must not import it back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from belong.errors import ValidationError
from belong.pipeline.components import Progress
from belong.pipeline.pipeline import Pipeline
from belong.pipeline.types import Merged, Request
from belong.ranking.dataset import TrainingLists


def source_columns(source_names: Sequence[str], cands: Sequence[Merged], n_features: int,
                   weights: dict[str, float] | None, blend_c: float) -> tuple[np.ndarray, np.ndarray]:
    """The feature rows of ``cands`` (float32, NaN; ``3 * sources + n_features`` columns) with each source's score
    and rank filled in, and the blend's score (weighted RRF, c = ``blend_c``) of each candidate."""
    n_src = len(source_names)
    out = np.full((len(cands), 3 * n_src + n_features), np.nan, np.float32)
    col = {s: i for i, s in enumerate(source_names)}
    w = weights or {}
    blend = np.zeros(len(cands))
    for r, m in enumerate(cands):
        for s, (rank, cand) in m.hits.items():
            blend[r] += w.get(s, 1.0) / (blend_c + rank + 1)
            i = col.get(s)
            if i is not None:
                out[r, 2 * i] = cand.score
                out[r, 2 * i + 1] = rank
    return out, blend


def source_gaps(out: np.ndarray, n_src: int, n_features: int) -> None:
    """Fill the last ``n_src`` columns of ``out``: each source's score minus its best score in the list (NaN where
    the source did not find the candidate)."""
    base = 2 * n_src
    scores = out[:, 0:base:2]
    found = ~np.isnan(scores)
    best = np.where(found, scores, -np.inf).max(axis=0)
    out[:, base + n_features:] = np.where(found, scores - best, np.nan)


def sample_users(held: dict[int, Any], max_users: int, seed: int) -> np.ndarray:
    """The users with a label, sorted; a seeded sample of ``max_users`` of them where there are more."""
    users = np.array(sorted(held), np.int64)
    rng = np.random.default_rng(seed + 1)
    if users.size > max_users:
        users = np.sort(rng.choice(users, max_users, replace=False))
    return users


def candidate_lists(stage: Pipeline, user_ids: Sequence[str], users: np.ndarray, progress: Progress | None
                    ) -> Iterator[tuple[int, Request, list[Merged]]]:
    """Per user (an index into ``user_ids``) with candidates: (user, request, the candidate stage's merged,
    filtered, unscored list)."""
    for done, u in enumerate(users.tolist(), 1):
        req = Request(user_ids[u], stage.surface, k=20, explain=False)
        cands = [m for m, _ in stage.candidates(req, score=False).ranked]
        if progress is not None and (done % 100 == 0 or done == users.size):
            progress(done, int(users.size))
        if cands:
            yield u, req, cands


def no_lists(feature_names: list[str], source_names: list[str], stats: dict[str, Any]) -> TrainingLists:
    """Training lists without a list (no sampled user had candidates)."""
    return TrainingLists(np.zeros((0, len(feature_names)), np.float32), np.zeros(0, np.float32),
                         np.zeros(0, np.int64), feature_names, source_names, np.zeros(0, np.int64),
                         np.zeros(0, np.int64), stats)


def check_cut_settings(name: str, holdout_by: str, choices: Sequence[str], holdout: float, users: int) -> None:
    """The validation cut's settings a scorer that learns from lists shares: ``holdout_by`` one of ``choices``,
    ``holdout`` in (0, 1), ``users`` (lists at most) >= 10; a bad one is a :class:`ValidationError` naming it."""
    if holdout_by not in choices:
        raise ValidationError(f"{name}.holdout_by", f"must be one of {', '.join(choices)}, got {holdout_by!r}")
    if not 0.0 < holdout < 1.0:
        raise ValidationError(f"{name}.holdout", f"must be between 0 and 1, got {holdout}")
    if users < 10:
        raise ValidationError(f"{name}.users", f"must be >= 10, got {users}")
