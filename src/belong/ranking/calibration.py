"""Probability calibration (isotonic or Platt) and the expected calibration error that says whether it helped."""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from belong.errors import ValidationError

METHODS = ("isotonic", "platt")


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the count-weighted mean |mean(y) - mean(p)| over ``bins`` equal-width probability bins."""
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    y = np.asarray(y, np.float64)
    if p.size == 0:
        return 0.0
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins)
    sp_ = np.bincount(idx, weights=p, minlength=bins)
    sy = np.bincount(idx, weights=y, minlength=bins)
    nz = n > 0
    return float(np.sum(np.abs(sy[nz] - sp_[nz])) / p.size)


class Calibrator:
    """Maps raw model outputs (probabilities or margins) to calibrated probabilities."""

    def __init__(self, method: str = "isotonic") -> None:
        if method not in METHODS:
            raise ValidationError("calibration", f"must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.model: IsotonicRegression | LogisticRegression | None = None

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, np.float64)
        y = np.asarray(y, np.float64)
        if self.method == "isotonic":
            self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        else:
            self.model = LogisticRegression(C=1e4).fit(raw.reshape(-1, 1), y.astype(np.int64))
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise RuntimeError("calibrator: call fit() first")
        raw = np.asarray(raw, np.float64)
        if isinstance(self.model, IsotonicRegression):
            return self.model.predict(raw)
        return self.model.predict_proba(raw.reshape(-1, 1))[:, 1]
