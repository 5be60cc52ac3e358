"""ROC and precision-recall curves, and the reliability diagram with its calibration error.

Curves are computed exactly at every distinct score, then thinned to a few hundred points for
plotting (a million-row curve has a million vertices no reader can see). The reliability
diagram uses equal-mass bins: CTR predictions crowd into a narrow low range, where equal-width
bins over [0, 1] would leave almost every row in the first bin. The expected calibration error
over those bins is the adaptive ECE of Nixon et al., "Measuring Calibration in Deep Learning"
(CVPR Workshops 2019): the row-weighted mean of |mean prediction - observed rate| per bin.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Curve:
    """A thinned curve: ``x``/``y`` points in plotting order, and the area the exact curve encloses."""

    x: list[float]
    y: list[float]
    area: float


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> tuple[list[float], list[float]]:
    if x.size <= points:
        return x.tolist(), y.tolist()
    keep = np.unique(np.linspace(0, x.size - 1, points).round().astype(np.int64))
    return x[keep].tolist(), y[keep].tolist()


def _counts_by_threshold(p: np.ndarray, y: np.ndarray, order: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when predicting 1 for scores >= each distinct score, highest first."""
    order = (np.argsort(p, kind="stable") if order is None else order)[::-1]  # descending
    p_sorted, y_sorted = p[order], y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(p_sorted)), p_sorted.size - 1]  # last row of each distinct score
    tp = np.cumsum(y_sorted)[last_of_run]
    fp = (last_of_run + 1) - tp
    return tp.astype(np.float64), fp.astype(np.float64)


def roc_curve(p: np.ndarray, y: np.ndarray, points: int = 400, order: np.ndarray | None = None) -> Curve:
    """False positive rate against true positive rate; ``area`` is the AUC (trapezoids, ties as half).
    ``order``: the rows by ascending score, when the caller has sorted them already."""
    tp, fp = _counts_by_threshold(np.asarray(p), np.asarray(y), order)
    fpr = np.r_[0.0, fp / fp[-1]]
    tpr = np.r_[0.0, tp / tp[-1]]
    x, yy = _thin(fpr, tpr, points)
    return Curve(x, yy, float(np.trapezoid(tpr, fpr)))


def pr_curve(p: np.ndarray, y: np.ndarray, points: int = 400, order: np.ndarray | None = None) -> Curve:
    """Recall against precision; ``area`` is average precision (sum of precision x recall steps)."""
    tp, fp = _counts_by_threshold(np.asarray(p), np.asarray(y), order)
    recall = tp / tp[-1]
    precision = tp / (tp + fp)
    average_precision = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    x, yy = _thin(recall, precision, points)
    return Curve(x, yy, average_precision)


@dataclasses.dataclass
class Reliability:
    """Per-bin calibration: rows, mean prediction and observed click rate; bin score edges; ECE."""

    edges: list[float]
    rows: list[int]
    mean_prediction: list[float]
    observed_rate: list[float]
    ece: float


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 20) -> Reliability:
    """Equal-mass bins of the predictions (rows sorted by score, cut into ``bins`` near-equal runs).

    Rows with equal scores always share a bin, so a bin may hold more rows than its share and a
    model with few distinct scores gets fewer bins.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if p.size == 0:
        raise ValueError("reliability diagram of zero rows")
    # Edges are observed scores, so every bin [edges[b], edges[b+1]) holds at least its lower edge.
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1), method="lower"))
    if edges.size == 1:  # every score equal: one bin
        edges = np.r_[edges, edges]
    index = np.searchsorted(edges[1:-1], p, side="right")  # (N,) bin of each row; the last bin is closed
    n_bins = edges.size - 1
    rows = np.bincount(index, minlength=n_bins)
    mean_p = np.bincount(index, weights=p, minlength=n_bins) / rows
    rate = np.bincount(index, weights=y, minlength=n_bins) / rows
    ece = float(np.sum(rows * np.abs(mean_p - rate)) / p.size)
    return Reliability(edges.tolist(), rows.tolist(), mean_p.tolist(), rate.tolist(), ece)
