import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.core.metrics import CTRMetrics, auc, entropy, logloss


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
