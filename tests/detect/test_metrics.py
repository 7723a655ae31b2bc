"""Detection metrics against independent brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

from viclab.core.errors import ViclabError
from viclab.core.metrics import curves, detection_metrics, rates_at, threshold_at_fpr


def _tied_data(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes with scores rounded to a coarse grid, so ties are plentiful."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(labels * 1.0, 1.0), 1)
    return labels, scores


def _mann_whitney_auc(labels, scores) -> float:
    """Share of (anomaly, normal) pairs ranked correctly, ties counting one half."""
    pos, neg = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def _roc_points(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """ROC vertices, one per distinct threshold (rule score >= t), from (0, 0) to (1, 1)."""
    ts = np.unique(scores)[::-1]
    fpr = [0.0] + [float((scores[labels == 0] >= t).mean()) for t in ts]
    tpr = [0.0] + [float((scores[labels == 1] >= t).mean()) for t in ts]
    return np.array(fpr), np.array(tpr)


def _brute_pauc(labels, scores, max_fpr: float) -> float:
    """Trapezoid area of the ROC up to max_fpr (interpolated at the cut), McClish-standardised."""
    fpr, tpr = _roc_points(labels, scores)
    area = 0.0
    for (x0, y0), (x1, y1) in zip(zip(fpr, tpr), zip(fpr[1:], tpr[1:])):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:  # cut the segment at max_fpr
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    lo, hi = max_fpr**2 / 2, max_fpr
    return 0.5 * (1 + (area - lo) / (hi - lo))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_fpr", [0.05, 0.1, 0.37])
def test_auroc_and_pauc_match_brute_force(seed, max_fpr):
    labels, scores = _tied_data(seed)
    assert len(np.unique(scores)) < len(scores) / 2  # the data really has ties
    m = detection_metrics(labels, scores, max_fpr=max_fpr)
    assert m["auroc"] == pytest.approx(_mann_whitney_auc(labels, scores), abs=1e-12)
    assert m["pauc"] == pytest.approx(_brute_pauc(labels, scores, max_fpr), abs=1e-9)
    assert (m["n_normal"], m["n_anomalous"], m["max_fpr"]) == ((labels == 0).sum(), labels.sum(), max_fpr)


def test_pauc_extremes():
    labels = np.array([0, 0, 0, 1, 1])
    assert detection_metrics(labels, [0, 1, 2, 3, 4])["pauc"] == pytest.approx(1.0)
    assert detection_metrics(labels, [4, 3, 2, 1, 0])["pauc"] == pytest.approx(_brute_pauc(
        labels, np.array([4.0, 3, 2, 1, 0]), 0.1))


def test_aupr_by_hand():
    # Ranked by score: 1 (anomaly), 0, 1, 0. Average precision = sum over anomalies of the
    # precision at its rank, divided by the number of anomalies: (1/1 + 2/3) / 2.
    labels = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    assert detection_metrics(labels, scores)["aupr"] == pytest.approx((1 + 2 / 3) / 2)


def test_curves_endpoints():
    labels, scores = _tied_data(0)
    c = curves(labels, scores)
    assert (c["fpr"][0], c["tpr"][0], c["fpr"][-1], c["tpr"][-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(c["fpr"]) >= 0) and np.all(np.diff(c["tpr"]) >= 0)
    assert c["recall"][0] == 1 and c["recall"][-1] == 0 and c["precision"][-1] == 1
    assert len(c["recall"]) == len(c["precision"])


@pytest.mark.parametrize("fpr", [0.0, 0.01, 0.05, 0.1, 0.29, 0.5, 0.9])
@pytest.mark.parametrize("tied", [False, True])
def test_threshold_at_fpr_is_smallest_valid(fpr, tied):
    normal = np.random.default_rng(7).normal(size=100)
    if tied:
        normal = np.round(normal, 1)
    t = threshold_at_fpr(normal, fpr)
    assert (normal > t).mean() <= fpr
    below = np.unique(normal)[np.unique(normal) < t]
    lower = below[-1] if len(below) else t - 1.0
    assert (normal > lower).mean() > fpr


def test_rates_at_counts():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.5, 0.9, 0.4, 0.6, 0.9])
    r = rates_at(labels, scores, 0.5)  # flagged: 0.9 (normal), 0.6, 0.9 (anomalies); 0.5 is not > 0.5
    assert (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 2, 1)
    assert (r["tpr"], r["fpr"], r["precision"]) == pytest.approx((2 / 3, 1 / 3, 2 / 3))
    assert rates_at(labels, scores, 10.0)["precision"] == 0.0


@pytest.mark.parametrize("call", [
    lambda: detection_metrics([0, 0, 0], [0.1, 0.2, 0.3]),
    lambda: detection_metrics([1, 1], [0.1, 0.2]),
    lambda: detection_metrics([0, 1, 1], [0.1, np.nan, 0.3]),
    lambda: detection_metrics([0, 1], [0.1, np.inf]),
    lambda: detection_metrics([0, 1], [0.1, 0.2], max_fpr=0.0),
    lambda: detection_metrics([0, 2], [0.1, 0.2]),
    lambda: detection_metrics([0, 1, 1], [0.1, 0.2]),
    lambda: curves([1, 1], [0.1, 0.2]),
    lambda: rates_at([0, 0], [0.1, 0.2], 0.0),
    lambda: threshold_at_fpr([], 0.1),
    lambda: threshold_at_fpr([0.1, 0.2], 1.0),
    lambda: threshold_at_fpr([0.1, 0.2], -0.1),
    lambda: threshold_at_fpr([0.1, np.nan], 0.1),
])
def test_bad_inputs_raise_viclab_error(call):
    with pytest.raises(ViclabError):
        call()


def test_bootstrap_interval_is_sklearn_on_the_same_resamples():
    from sklearn.metrics import roc_auc_score

    from viclab.core.metrics import auroc_interval

    rng = np.random.default_rng(5)
    labels = np.array([0] * 12 + [1] * 7)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: ties
    low, high = auroc_interval(labels, scores, reps=300, seed=11)
    # the same draws, one resample at a time, scored by sklearn
    draw = np.random.default_rng(11)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    rows, cols = draw.integers(0, len(pos), (300, len(pos))), draw.integers(0, len(neg), (300, len(neg)))
    aucs = [roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[scores[pos[r]], scores[neg[c]]])
            for r, c in zip(rows, cols)]
    assert (low, high) == pytest.approx((np.quantile(aucs, 0.025), np.quantile(aucs, 0.975)))
    assert low < roc_auc_score(labels, scores) < high
