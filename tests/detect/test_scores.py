"""Anomaly scores against independent references: scipy, brute-force numpy, spec §1's equations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis

from viclab.core.errors import ViclabError
from viclab.detect.detectors import (
    NormalStats,
    fit_gaussian,
    knn_scores,
    mahalanobis_scores,
    term_contributions,
    view_invariance,
)


def _spec_variance(z: np.ndarray, gamma: float, eps: float) -> float:
    """spec §1: (1/d) sum_j max(0, gamma - (sqrt(Var(z_j)) + eps)), Var with 1/(n-1), one dimension at a time."""
    n, d = z.shape
    total = 0.0
    for j in range(d):
        col = z[:, j]
        var = sum((v - col.mean()) ** 2 for v in col) / (n - 1)
        total += max(0.0, gamma - (np.sqrt(var) + eps))
    return total / d


def _spec_covariance(z: np.ndarray) -> float:
    """spec §1: (1/d) sum_{i != j} C_ij^2, C with 1/(n-1), entry by entry."""
    n, d = z.shape
    m = z.mean(0)
    total = 0.0
    for i in range(d):
        for j in range(d):
            if i != j:
                c = sum((z[k, i] - m[i]) * (z[k, j] - m[j]) for k in range(n)) / (n - 1)
                total += c * c
    return total / d


def test_knn_against_brute_force_with_cosine_option():
    rng = np.random.default_rng(0)
    ref, q = rng.normal(size=(40, 6)).astype(np.float32), rng.normal(size=(9, 6)).astype(np.float32)
    d = np.sqrt(((q[:, None] - ref[None]) ** 2).sum(-1))
    np.testing.assert_allclose(knn_scores(ref, q, 3), np.sort(d, 1)[:, :3].mean(1), rtol=1e-5)
    cos = 1 - (q @ ref.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(ref, axis=1)[None]
    np.testing.assert_allclose(knn_scores(ref, q, 3, cosine=True), np.sort(np.sqrt(2 * cos), 1)[:, :3].mean(1),
                               rtol=1e-4, atol=1e-5)
    with pytest.raises(ViclabError, match="larger than the 40 normal images"):
        knn_scores(ref, q, 41)


@pytest.mark.parametrize("shrinkage", [0.0, 0.3])
def test_mahalanobis_against_scipy_with_fixed_shrinkage(shrinkage):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)) @ rng.normal(size=(5, 5)) + 3.0
    q = rng.normal(size=(7, 5)) * 2
    mean, precision, used = fit_gaussian(x, shrinkage)
    # (1 - s) S + s trace(S)/d I with S the maximum-likelihood covariance, by hand.
    s = np.cov(x, rowvar=False, bias=True)
    shrunk = (1 - shrinkage) * s + shrinkage * np.trace(s) / 5 * np.eye(5)
    vi = np.linalg.inv(shrunk)
    expected = [scipy_mahalanobis(row, x.mean(0), vi) for row in q]
    np.testing.assert_allclose(mahalanobis_scores(q, mean, precision), expected, rtol=1e-8)
    assert used == shrinkage


def test_ledoit_wolf_shrinkage_is_the_published_estimate():
    """Ledoit & Wolf (2004): shrinkage = min(1, sum_k ||x_k x_k^T - S||_F^2 / n^2 / ||S - mu I||_F^2), centred x."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 8)) * np.linspace(0.5, 3, 8)
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = np.trace(s) / d
    beta = sum(np.sum((np.outer(r, r) - s) ** 2) for r in xc) / n ** 2
    delta = np.sum((s - mu * np.eye(d)) ** 2)
    expected = min(1.0, beta / delta)
    _, precision, used = fit_gaussian(x)
    assert used == pytest.approx(expected, rel=1e-9)
    np.testing.assert_allclose(np.linalg.inv(precision), (1 - expected) * s + expected * mu * np.eye(d), atol=1e-10)


def test_view_invariance_is_the_mean_pairwise_spec_term():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(5, 4, 7))  # K views, M images, d
    got = view_invariance(torch.from_numpy(z)).numpy()
    for m in range(4):
        pairs = [np.mean((z[a, m] - z[b, m]) ** 2) for a in range(5) for b in range(a + 1, 5)]
        assert got[m] == pytest.approx(np.mean(pairs), rel=1e-12)


@pytest.mark.parametrize("gamma", [1.0, 3.0])
def test_term_contributions_against_a_loop_over_the_equations(gamma):
    rng = np.random.default_rng(4)
    normal = rng.normal(size=(30, 5)) * np.array([0.5, 1.0, 2.0, 3.0, 0.2]) + rng.normal(size=5)
    normal[:, 1] += 0.7 * normal[:, 0]  # some off-diagonal covariance
    images = rng.normal(size=(4, 5)) * 3
    var, cov = term_contributions(torch.from_numpy(images), NormalStats(torch.from_numpy(normal)), gamma, 1e-4)
    n = len(normal)
    for i, x in enumerate(images):
        both = np.vstack([normal, x])
        assert var[i].item() == pytest.approx(n * (_spec_variance(both, gamma, 1e-4)
                                                   - _spec_variance(normal, gamma, 1e-4)), rel=1e-8, abs=1e-10)
        assert cov[i].item() == pytest.approx(n * (_spec_covariance(both) - _spec_covariance(normal)), rel=1e-8)
    # gamma = 3 puts every dimension under the hinge, so the variance contribution is not identically 0
    assert gamma == 1.0 or np.abs(var.numpy()).min() > 0


def test_normal_stats_round_trip():
    z = torch.randn(20, 4, dtype=torch.float64)
    a = NormalStats(z)
    b = NormalStats.from_tensors(a.tensors())
    assert b.n == 20 and torch.equal(a.mean, b.mean) and torch.equal(a.scatter, b.scatter)
