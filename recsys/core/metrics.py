"""Offline CTR metrics: AUC, logloss, normalized entropy, calibration.

All metrics take click probabilities ``p`` and labels ``y`` in {0, 1}. AUC is exact: the
Mann-Whitney statistic with tied scores counted as half (ties are common once predictions
are rounded or a model saturates), computed in one place (:func:`_mann_whitney`) for the whole
set (:func:`auc`), a histogram (:func:`auc_from_counts`) or groups of rows (:class:`SortedScores`).
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
    positives = np.asarray(positives, dtype=np.float64)
    return float(_mann_whitney(positives, negatives, np.zeros(positives.size, np.int64), 1)[0])


class SortedScores:
    """One model's rows sorted by score once, for the AUC of any grouping of them (e.g. the
    rows of each frequency bucket of each feature): each grouping then costs linear passes.

    Each group's AUC is the Mann-Whitney statistic (:func:`_mann_whitney`) of its label counts
    per score level, and those counts come from one ``bincount`` over (group, score level)
    cells, as the rows are already in score order.

    Args:
        p: (N,) scores; y: (N,) labels in {0, 1}; order: the rows' ascending-score order when
            the caller has it already (any order among tied scores).
    """

    def __init__(self, p: np.ndarray, y: np.ndarray, order: np.ndarray | None = None) -> None:
        p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if p.shape != y.shape or p.ndim != 1:
            raise ValueError(f"scores {p.shape} and labels {y.shape} must be equal-length vectors")
        self.order = np.argsort(p, kind="stable") if order is None else np.asarray(order)  # (N,)
        ascending = p[self.order]
        self.level = np.cumsum(np.r_[True, ascending[1:] != ascending[:-1]]) - 1  # (N,) score level, score order
        self.levels = int(self.level[-1]) + 1 if p.size else 0
        self.y = y[self.order]  # (N,) labels, score order

    def auc_by_group(self, groups: np.ndarray, n_groups: int) -> np.ndarray:
        """The AUC of each group; ``groups`` (N,) holds each row's group in [0, n_groups), in the
        rows' own order. -> (n_groups,), NaN for a group without both classes."""
        groups = np.asarray(groups)
        if groups.shape != self.order.shape:
            raise ValueError(f"groups {groups.shape} must give one group per row ({self.order.size} rows)")
        if groups.size == 0:
            return np.full(n_groups, np.nan)
        if groups.min() < 0 or groups.max() >= n_groups:
            raise ValueError(f"groups must lie in [0, {n_groups}), got {groups.min()}..{groups.max()}")
        group = groups[self.order].astype(np.int64)  # (N,) score order
        if n_groups * self.levels <= 4 * group.size + 1024:  # a dense grid of cells: no sort
            cell, size = group * self.levels + self.level, n_groups * self.levels
            positives = np.bincount(cell, weights=self.y, minlength=size)  # (G * L,)
            negatives = np.bincount(cell, minlength=size) - positives
            return _mann_whitney(positives, negatives, np.repeat(np.arange(n_groups), self.levels), n_groups)
        # many groups and levels: a stable sort by group keeps score order within each group
        by_group = np.argsort(group, kind="stable")
        group, level = group[by_group], self.level[by_group]
        new_cell = np.r_[True, (group[1:] != group[:-1]) | (level[1:] != level[:-1])]
        cell = np.cumsum(new_cell) - 1  # (N,) cells with rows, ordered by group then level
        positives = np.bincount(cell, weights=self.y[by_group])
        return _mann_whitney(positives, np.bincount(cell) - positives, group[new_cell], n_groups)


def _mann_whitney(positives: np.ndarray, negatives: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Mann & Whitney's (1947) U over P * N, per group, from label counts per score level.

    Each group's levels are contiguous and in increasing score order; a positive beats every
    negative of its group at a lower level and ties (counts half) those at its own level.
    (L,), (L,), (L,) -> (n_groups,), NaN where a group lacks a class.
    """
    positives, negatives = np.asarray(positives, dtype=np.float64), np.asarray(negatives, dtype=np.float64)
    if positives.size == 0:
        return np.full(n_groups, np.nan)
    negatives_before = np.cumsum(negatives) - negatives  # (L,) over all levels so far
    first = np.r_[True, group[1:] != group[:-1]]  # (L,) the first level of each group's run
    run = np.cumsum(first) - 1
    negatives_below = negatives_before - negatives_before[first][run]  # (L,) within the group
    wins = np.bincount(group, weights=positives * (negatives_below + 0.5 * negatives), minlength=n_groups)
    pairs = np.bincount(group, weights=positives, minlength=n_groups) * np.bincount(
        group, weights=negatives, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / np.where(pairs > 0, pairs, 1), np.nan)


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
