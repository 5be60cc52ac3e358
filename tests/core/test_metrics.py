import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.core.metrics import CTRMetrics, SortedScores, auc, auc_from_counts, entropy, logloss


def brute_force_auc(p, y):
    pos, neg = p[y == 1], p[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1)), min_size=2, max_size=60))
def test_auc_equals_pairwise_count_with_ties(rows):
    p = np.array([r[0] / 6 for r in rows])  # few distinct scores: many ties
    y = np.array([r[1] for r in rows])
    if y.min() == y.max():
        assert math.isnan(auc(p, y))
    else:
        assert auc(p, y) == pytest.approx(brute_force_auc(p, y))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=80),
       st.sampled_from([4, 3000]), st.booleans())
def test_auc_by_group_equals_the_pairwise_count_of_each_group(rows, spread, reverse_ties):
    """Both ways of counting cells (a dense grid for few groups, a sort by group for many) and
    any order among tied scores give each group's brute-force AUC."""
    p = np.array([r[0] / 6 for r in rows])
    y = np.array([r[1] for r in rows])
    groups = np.array([r[2] for r in rows]) * (spread // 4)  # groups 0..3, or spread over 0..2250
    order = np.lexsort((-y if reverse_ties else y, p))  # positives first or last among ties
    got = SortedScores(p, y, order).auc_by_group(groups, spread)
    for g in range(spread):
        m = groups == g
        if m.any() and 0 < y[m].sum() < m.sum():
            assert got[g] == pytest.approx(brute_force_auc(p[m], y[m]))
        else:
            assert math.isnan(got[g])


def test_auc_by_group_refuses_groups_out_of_range_or_of_another_length():
    scores = SortedScores(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match=r"groups must lie in \[0, 2\), got 0..2"):
        scores.auc_by_group(np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="one group per row"):
        scores.auc_by_group(np.array([0, 1]), 2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=12))
def test_auc_from_counts_equals_the_pairwise_count_of_the_rows_it_counts(levels):
    positives, negatives = np.array(levels).T
    p = np.repeat(np.r_[np.arange(len(levels)), np.arange(len(levels))], np.r_[positives, negatives])
    y = np.repeat([1, 0], [positives.sum(), negatives.sum()])
    if positives.sum() == 0 or negatives.sum() == 0:
        assert math.isnan(auc_from_counts(positives, negatives))
    else:
        assert auc_from_counts(positives, negatives) == pytest.approx(brute_force_auc(p, y))


def test_base_rate_prediction_has_unit_normalized_entropy_and_calibration():
    y = np.array([1, 0, 0, 0] * 25)
    m = CTRMetrics.compute(np.full(100, 0.25), y)
    assert m.normalized_entropy == pytest.approx(1.0)
    assert m.calibration == pytest.approx(1.0)
    assert m.auc == pytest.approx(0.5)
    assert m.logloss == pytest.approx(entropy(0.25))
    assert (m.rows, m.positives) == (100, 25)


def test_logloss_of_confident_mistake_is_large_but_finite():
    assert 10 < logloss(np.array([0.0]), np.array([1])) < 20


def test_metrics_reject_mismatched_inputs():
    with pytest.raises(ValueError, match="equal-length"):
        CTRMetrics.compute(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="zero rows"):
        CTRMetrics.compute(np.zeros(0), np.zeros(0))
