"""DeLong's test for correlated ROC curves, in the fast O(n log n) form of Sun & Xu (2014).

DeLong, DeLong & Clarke-Pearson (Biometrics 1988) estimate the covariance of several AUCs
measured on the *same* rows from per-row "structural components": for each positive, the
fraction of negatives it outranks (V10), and for each negative, the fraction of positives that
outrank it (V01). Sun & Xu (IEEE Signal Processing Letters 21(11), 2014) showed that these
components come from three mid-rank computations per model (over the positives, over the
negatives, over all rows), so the test costs one sort instead of the O(m n) pairwise table.

Pairing matters for CTR: two models scored on the same test rows have strongly correlated
AUCs, so the variance of their difference is far smaller than either AUC's own variance, and a
difference of 0.001 AUC can be significant on a million rows where unpaired intervals overlap.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


def score_order(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Row order by ascending score, negatives before positives among equal scores. (N,) -> (N,)

    One sort per model serves every rank statistic of the report (DeLong, curves, grouped AUCs).
    """
    by_label = np.argsort(np.asarray(labels), kind="stable")
    return by_label[np.argsort(np.asarray(scores)[by_label], kind="stable")]


def sorted_midranks(ascending: np.ndarray) -> np.ndarray:
    """Midranks (1-based, ties share the mean rank) of an already ascending array. (n,) -> (n,)"""
    starts = np.flatnonzero(np.r_[True, ascending[1:] != ascending[:-1]])
    lengths = np.diff(np.r_[starts, ascending.size])
    return np.repeat(starts + (lengths + 1) / 2.0, lengths)


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of the ranks they span. (n,) -> (n,)"""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size)
    ranks[order] = sorted_midranks(np.asarray(x)[order])
    return ranks


@dataclasses.dataclass
class RocComponents:
    """One model's DeLong structural components on a set of rows: computed once, they give its
    AUC, the AUC's variance, and its paired test against any other model on the same rows.

    Attributes:
        v10: (m,) per positive, the fraction of negatives it outranks (ties count half).
        v01: (n,) per negative, the fraction of positives that outrank it.
    """

    v10: np.ndarray
    v01: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, order: np.ndarray | None = None) -> "RocComponents":
        """Components of ``scores`` (N,) against ``labels`` (N,) in {0, 1}; ``order`` is
        :func:`score_order` when the caller has it already. Both vectors keep the rows' order,
        so two models' components pair up row by row.

        Raises:
            ValueError: a class has fewer than two rows (the AUC's variance is undefined).
        """
        scores = np.asarray(scores, dtype=np.float64)
        labels = np.asarray(labels).astype(bool)
        m, n = int(labels.sum()), int(labels.size - labels.sum())
        if m < 2 or n < 2:
            raise ValueError(f"DeLong needs both classes, two rows each at least; got {m} positives and {n} negatives")
        order = score_order(scores, labels) if order is None else order
        ascending, is_pos = scores[order], labels[order]  # (N,)
        rank_all = sorted_midranks(ascending)
        # A positive's rank among all rows minus its rank among positives = negatives it outranks.
        per_row = np.empty(scores.size)
        per_row[order[is_pos]] = (rank_all[is_pos] - sorted_midranks(ascending[is_pos])) / n
        per_row[order[~is_pos]] = 1.0 - (rank_all[~is_pos] - sorted_midranks(ascending[~is_pos])) / m
        return cls(per_row[labels], per_row[~labels])

    @property
    def auc(self) -> float:
        return float(self.v10.mean())

    @property
    def variance(self) -> float:
        return float(self.v10.var(ddof=1) / self.v10.size + self.v01.var(ddof=1) / self.v01.size)


def delong_covariance(models: list[RocComponents]) -> np.ndarray:
    """(k, k) covariance of the AUCs of k models scored on the same rows: S10/m + S01/n."""
    v10 = np.stack([c.v10 for c in models])  # (k, m)
    v01 = np.stack([c.v01 for c in models])  # (k, n)
    return np.atleast_2d(np.cov(v10, ddof=1)) / v10.shape[1] + np.atleast_2d(np.cov(v01, ddof=1)) / v01.shape[1]


def _normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2.0))


def auc_confidence_interval(model: RocComponents, level: float = 0.95) -> tuple[float, float, float]:
    """(AUC, low, high): the normal interval from DeLong's variance, clipped to [0, 1]."""
    half = _normal_quantile(0.5 + level / 2) * math.sqrt(max(model.variance, 0.0))
    return model.auc, max(0.0, model.auc - half), min(1.0, model.auc + half)


@dataclasses.dataclass
class PairedTest:
    """DeLong's paired test of model A against model B on the same rows (two-sided)."""

    auc_a: float
    auc_b: float
    difference: float  # auc_a - auc_b
    std_error: float
    z: float
    p_value: float


def paired_test(a: RocComponents, b: RocComponents) -> PairedTest:
    """Is AUC(A) different from AUC(B), both scored on the same rows (same labels, same order)?
    Identical scores give p = 1: a zero difference with zero variance is no evidence."""
    if a.v10.size != b.v10.size or a.v01.size != b.v01.size:
        raise ValueError(f"paired test on different rows: {a.v10.size}/{a.v01.size} vs {b.v10.size}/{b.v01.size} positives/negatives")
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ delong_covariance([a, b]) @ contrast)
    diff = a.auc - b.auc
    if variance <= 0.0:
        z, p = (0.0, 1.0) if diff == 0.0 else (math.copysign(math.inf, diff), 0.0)
        return PairedTest(a.auc, b.auc, diff, 0.0, z, p)
    se = math.sqrt(variance)
    z = diff / se
    return PairedTest(a.auc, b.auc, diff, se, z, _normal_two_sided_p(z))


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray) -> PairedTest:
    """:func:`paired_test` of two score vectors (N,) against the same labels (N,)."""
    if len(scores_a) != len(scores_b) or len(scores_a) != len(labels):
        raise ValueError(f"paired test needs equal lengths: {len(scores_a)}, {len(scores_b)} scores, {len(labels)} labels")
    return paired_test(RocComponents.of(scores_a, labels), RocComponents.of(scores_b, labels))


def _normal_quantile(q: float) -> float:
    """Inverse standard normal CDF by bisection on erfc (no SciPy needed for one number)."""
    lo, hi = -10.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * math.erfc(-mid / math.sqrt(2.0)) < q:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
