"""Retrieval and kNN anomaly scores vs brute-force NumPy distances; AUROC vs ranks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata

from viclab.core.metrics import roc
from viclab.represent.neighbors import farthest, knn_anomaly_scores, nearest, one_query_per_class, precision_at_k


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(500, 16)).astype(np.float32), rng.normal(size=(40, 16)).astype(np.float32)


def _dist(a, b):
    return np.sqrt(((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2).sum(-1))


def test_nearest_and_farthest_are_the_true_extremes(data):
    ref, q = data
    d = _dist(q, ref)
    nd, ni = nearest(ref, q, 5)
    fd, fi = farthest(ref, q, 5)
    np.testing.assert_array_equal(ni, np.argsort(d, 1)[:, :5])
    np.testing.assert_array_equal(fi, np.argsort(-d, 1)[:, :5])
    np.testing.assert_allclose(nd, np.sort(d, 1)[:, :5], rtol=1e-4)
    np.testing.assert_allclose(fd, -np.sort(-d, 1)[:, :5], rtol=1e-4)


def test_nearest_excludes_the_query_itself(data):
    ref, _ = data
    q = np.array([3, 77, 400])
    _, idx = nearest(ref, ref[q], 4, exclude=q)
    d = _dist(ref[q], ref)
    d[np.arange(3), q] = np.inf
    np.testing.assert_array_equal(idx, np.argsort(d, 1)[:, :4])


def test_knn_anomaly_score_is_mean_distance_to_k_nearest(data):
    ref, q = data
    for k in (1, 2, 5):
        expect = np.sort(_dist(q, ref), 1)[:, :k].mean(1)
        np.testing.assert_allclose(knn_anomaly_scores(ref, q, k), expect, rtol=1e-4)


def test_auroc_equals_the_rank_statistic():
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300), np.ones(120)].astype(int)
    scores = np.r_[rng.normal(size=300), rng.normal(0.8, 1, 120)].round(1)  # rounded: ties count half
    fpr, tpr, auc = roc(labels, scores)
    r = rankdata(scores)  # Mann-Whitney U / (n0 n1)
    n1, n0 = labels.sum(), (1 - labels).sum()
    u = r[labels == 1].sum() - n1 * (n1 + 1) / 2
    assert auc == pytest.approx(u / (n0 * n1), abs=1e-12)
    assert fpr[0] == 0 and tpr[-1] == 1 and np.all(np.diff(fpr) >= 0)


def test_precision_at_k_vs_brute_force(data):
    ref, _ = data
    y = (ref[:, 0] > 0).astype(int) + 2 * (ref[:, 1] > 0)
    d = _dist(ref, ref)
    np.fill_diagonal(d, np.inf)
    expect = (y[np.argsort(d, 1)[:, :5]] == y[:, None]).mean()
    assert precision_at_k(ref, y, 5, queries=10_000) == pytest.approx(expect)


def test_one_query_per_class_is_seeded():
    y = np.repeat(np.arange(4), 25)
    q = one_query_per_class(y, seed=3)
    assert list(y[q]) == [0, 1, 2, 3]
    assert np.array_equal(q, one_query_per_class(y, seed=3))
    assert not np.array_equal(q, one_query_per_class(y, seed=4))
