"""Probability calibration (isotonic or Platt) and the expected calibration error that says whether it helped."""

from __future__ import annotations

import numpy as np
from scipy.special import expit
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
    """Maps raw model outputs (probabilities or margins) to calibrated probabilities.

    Fitted with scikit-learn, kept as plain arrays (:attr:`arrays`, what a model artifact saves): isotonic is
    its thresholds ``x`` and ``y`` (piecewise linear, clipped at the ends), Platt its ``coef`` and
    ``intercept``."""

    def __init__(self, method: str = "isotonic", arrays: dict[str, np.ndarray] | None = None) -> None:
        if method not in METHODS:
            raise ValidationError("calibration", f"must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.arrays: dict[str, np.ndarray] = {}
        if arrays is not None:
            want = {"x", "y"} if method == "isotonic" else {"coef", "intercept"}
            if set(arrays) != want:
                raise ValidationError("calibration", f"{method} needs {sorted(want)}, got {sorted(arrays)}")
            self.arrays = {k: np.asarray(v, np.float64) for k, v in arrays.items()}

    def fit(self, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        raw = np.asarray(raw, np.float64)
        y = np.asarray(y, np.float64)
        if self.method == "isotonic":
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            self.arrays = {"x": iso.X_thresholds_, "y": iso.y_thresholds_}
        else:
            lr = LogisticRegression(C=1e4).fit(raw.reshape(-1, 1), y.astype(np.int64))
            self.arrays = {"coef": lr.coef_[0], "intercept": lr.intercept_}
        self.arrays = {k: np.asarray(v, np.float64) for k, v in self.arrays.items()}
        return self

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """What the scikit-learn model predicts: ``np.interp`` is its isotonic interpolation with clipping,
        ``expit(coef * raw + intercept)`` its binary logistic probability."""
        if not self.arrays:
            raise RuntimeError("calibrator: call fit() first")
        raw = np.asarray(raw, np.float64)
        a = self.arrays
        if self.method == "isotonic":
            return np.interp(raw, a["x"], a["y"])
        return expit(raw * a["coef"][0] + a["intercept"][0])
