"""Offline CTR metrics: AUC, logloss, normalized entropy, calibration.

All metrics take click probabilities ``p`` and labels ``y`` in {0, 1}. AUC is exact: the
Mann-Whitney statistic with tied scores counted as half (ties are common once predictions
are rounded or a model saturates).
"""

from __future__ import annotations

import dataclasses

import numpy as np

_EPS = 1e-7


def auc(p: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve; NaN when only one class is present."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    positives = np.bincount(inverse, weights=y, minlength=counts.size)  # per distinct score
    return auc_from_counts(positives, counts - positives)


def auc_from_counts(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUC from label counts per score level, levels in increasing score order: the
    Mann-Whitney statistic, pairs within one level counted as half. With one level per
    distinct score it is exact (:func:`auc`); with score bins (a histogram) pairs in the same
    bin count as ties. NaN when only one class is present.
    """
    positives, negatives = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    n_pos, n_neg = positives.sum(), negatives.sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    negatives_below = np.cumsum(negatives) - negatives
    return float(np.sum(positives * (negatives_below + 0.5 * negatives)) / (n_pos * n_neg))


def logloss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def entropy(rate: float) -> float:
    """Logloss of always predicting the base rate."""
    rate = min(max(rate, _EPS), 1 - _EPS)
    return float(-(rate * np.log(rate) + (1 - rate) * np.log1p(-rate)))


@dataclasses.dataclass
class CTRMetrics:
    """The figures every evaluation report carries.

    normalized_entropy is logloss divided by the entropy of the positive rate (He et al., 2014):
    below 1 means better than predicting the base rate. calibration is mean prediction over
    positive rate: 1 is perfectly calibrated on average.
    """

    rows: int
    positives: int
    positive_rate: float
    auc: float
    logloss: float
    normalized_entropy: float
    mean_prediction: float
    calibration: float

    @classmethod
    def compute(cls, p: np.ndarray, y: np.ndarray) -> "CTRMetrics":
        p = np.asarray(p, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if p.shape != y.shape or p.ndim != 1:
            raise ValueError(f"predictions {p.shape} and labels {y.shape} must be equal-length vectors")
        if p.size == 0:
            raise ValueError("cannot compute metrics over zero rows")
        rate = float(y.mean())
        ll = logloss(p, y)
        mean_p = float(p.mean())
        return cls(
            rows=int(p.size),
            positives=int(y.sum()),
            positive_rate=rate,
            auc=auc(p, y),
            logloss=ll,
            normalized_entropy=ll / entropy(rate),
            mean_prediction=mean_p,
            calibration=mean_p / rate if rate > 0 else float("nan"),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
