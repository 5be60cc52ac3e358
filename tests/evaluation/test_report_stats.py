"""The report's statistics against brute-force references: DeLong, curves, reliability bins, frequency buckets."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys.evaluation.breakdown import BUCKETS, ScoreIndex, bucket_edges
from recsys.evaluation.curves import pr_curve, reliability, roc_curve
from recsys.core.metrics import auc, logloss
from recsys.evaluation.significance import RocComponents, auc_confidence_interval, delong_covariance, delong_test, midranks


def brute_force_delong(scores: np.ndarray, y: np.ndarray):
    """DeLong et al. (1988) as written: the O(m n) table of pairwise kernels psi(x, y)."""
    aucs, v10s, v01s = [], [], []
    for s in scores:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])  # (m, n)
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    v10, v01 = np.array(v10s), np.array(v01s)
    m, n = v10.shape[1], v01.shape[1]
    s10 = (v10 - v10.mean(1, keepdims=True)) @ (v10 - v10.mean(1, keepdims=True)).T / (m - 1)
    s01 = (v01 - v01.mean(1, keepdims=True)) @ (v01 - v01.mean(1, keepdims=True)).T / (n - 1)
    return np.array(aucs), s10 / m + s01 / n


def test_midranks_average_tied_positions():
    np.testing.assert_array_equal(midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(4, 80), st.integers(2, 12))
def test_fast_delong_equals_the_pairwise_definition(seed, n, levels):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    y[:4] = [0, 0, 1, 1]  # both classes, two of each
    scores = rng.integers(0, levels, size=(3, n)) / levels  # few levels: many ties
    models = [RocComponents.of(s, y) for s in scores]
    aucs, cov = brute_force_delong(scores, y)
    np.testing.assert_allclose([c.auc for c in models], aucs, atol=1e-12)
    np.testing.assert_allclose(delong_covariance(models), cov, atol=1e-12)
    assert models[0].variance == pytest.approx(cov[0, 0], abs=1e-12)
    assert models[0].auc == pytest.approx(auc(scores[0], y))


def test_delong_on_known_data_matches_the_reference_numbers():
    # Hand-checkable case: 3 positives, 3 negatives.
    y = np.array([1, 1, 1, 0, 0, 0])
    a = np.array([0.9, 0.8, 0.4, 0.5, 0.2, 0.1])  # one inversion: AUC 8/9
    b = np.array([0.9, 0.3, 0.4, 0.5, 0.2, 0.1])  # two inversions: AUC 7/9
    t = delong_test(a, b, y)
    assert t.auc_a == pytest.approx(8 / 9) and t.auc_b == pytest.approx(7 / 9)
    aucs, cov = brute_force_delong(np.stack([a, b]), y)
    se = math.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert t.std_error == pytest.approx(se)
    assert t.z == pytest.approx((8 / 9 - 7 / 9) / se)
    assert t.p_value == pytest.approx(math.erfc(abs(t.z) / math.sqrt(2)))


def test_identical_runs_give_p_one_and_a_clearly_better_model_p_below_0_01():
    rng = np.random.default_rng(0)
    n = 20_000
    signal = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-2 * signal))).astype(np.int8)
    good = 1 / (1 + np.exp(-(2 * signal + rng.normal(0, 0.5, n))))
    worse = 1 / (1 + np.exp(-(2 * signal + rng.normal(0, 2.0, n))))
    same = delong_test(good, good.copy(), y)
    assert same.p_value == 1.0 and same.difference == 0.0
    better = delong_test(good, worse, y)
    assert better.difference > 0.02 and better.p_value < 0.01
    # unrelated noise: no evidence of a difference most of the time; this seed gives a large p
    noise_a, noise_b = rng.random(n), rng.random(n)
    assert delong_test(noise_a, noise_b, y).p_value > 0.05


def test_auc_confidence_interval_covers_the_true_auc_at_about_95_percent():
    rng = np.random.default_rng(1)
    hits, trials = 0, 200
    for _ in range(trials):  # binormal model with known AUC = Phi(d / sqrt(2))
        y = rng.integers(0, 2, 400)
        s = rng.normal(size=400) + 1.0 * y
        _, low, high = auc_confidence_interval(RocComponents.of(s, y))
        hits += low <= 0.5 * math.erfc(-1.0 / 2) <= high
    assert 0.90 <= hits / trials <= 0.99


def test_delong_refuses_a_single_class():
    with pytest.raises(ValueError, match="both classes"):
        RocComponents.of(np.array([0.1, 0.2, 0.3]), np.array([1, 1, 0]))


def test_roc_area_is_the_auc_and_average_precision_matches_a_loop():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 3000)
    p = np.round(rng.random(3000) * 0.5 + 0.3 * y, 2)  # ties
    roc = roc_curve(p, y, points=50)
    assert roc.area == pytest.approx(auc(p, y))
    assert len(roc.x) <= 50 and roc.x[0] == 0.0 and roc.y[-1] == 1.0
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(p)[::-1]:  # threshold at every distinct score, highest first
        pred = p >= t
        tp = np.sum(pred & (y == 1))
        recall, precision = tp / y.sum(), tp / pred.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    assert pr_curve(p, y).area == pytest.approx(ap)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 400), st.integers(1, 25))
def test_reliability_bins_match_a_brute_force_binning(seed, n, bins):
    rng = np.random.default_rng(seed)
    p = np.round(rng.beta(1, 8, n), 3)
    y = (rng.random(n) < p).astype(float)
    rel = reliability(p, y, bins)
    edges = rel.edges
    assert len(rel.rows) == len(edges) - 1 <= bins and sum(rel.rows) == n
    ece = 0.0
    for b in range(len(rel.rows)):
        last = b == len(rel.rows) - 1
        members = [i for i in range(n) if edges[b] <= p[i] and (p[i] < edges[b + 1] or (last and p[i] <= edges[b + 1]))]
        assert len(members) == rel.rows[b] > 0
        assert rel.mean_prediction[b] == pytest.approx(np.mean(p[members]))
        assert rel.observed_rate[b] == pytest.approx(np.mean(y[members]))
        ece += len(members) / n * abs(np.mean(p[members]) - np.mean(y[members]))
    assert rel.ece == pytest.approx(ece)


def test_bucket_edges_split_training_traffic_at_50_and_90_percent():
    counts = np.array([50, 20, 10, 8, 5, 4, 2, 1, 0])  # 8 kept ranks + the OOV row, 100 occurrences
    e = bucket_edges("C1", counts, 9)
    # ranks 0 -> 50% (head); 1..3 -> 88%, rank 4 -> 93% (torso ends after the rank that crosses 90%)
    assert (e.head_end, e.torso_end, e.oov_row, e.basis) == (1, 5, 8, "training counts")
    ids = np.arange(9)
    assert [BUCKETS[b] for b in e.assign(ids)] == ["head"] + ["torso"] * 4 + ["tail"] * 3 + ["oov"]
    uniform = bucket_edges("C2", None, 11)  # no vocabulary counts: ranks equally frequent
    assert (uniform.head_end, uniform.torso_end, uniform.basis[:7]) == (5, 9, "uniform")


def test_grouped_auc_and_logloss_match_per_group_brute_force():
    rng = np.random.default_rng(3)
    n = 2000
    y = rng.integers(0, 2, n)
    p = np.clip(np.round(rng.random(n) * 0.6 + 0.3 * y, 3), 0.001, 0.999)
    groups = rng.integers(0, 4, n)
    groups[groups == 3] = 2  # group 3 empty
    groups[:5] = 3
    y[:5] = 1  # group 3 has one class: AUC undefined
    got = ScoreIndex(p, y).grouped(groups, 4)
    for g in range(3):
        m = groups == g
        assert got.rows[g] == m.sum() and got.positives[g] == y[m].sum()
        assert got.auc[g] == pytest.approx(auc(p[m], y[m]))
        assert got.logloss[g] == pytest.approx(logloss(p[m], y[m]))
    assert math.isnan(got.auc[3]) and got.rows[3] == 5
