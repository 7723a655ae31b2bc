"""K-means and the exact silhouette vs sklearn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

from viclab.eval.cluster import kmeans, silhouette


@pytest.mark.parametrize("seed", [0, 1])
def test_silhouette_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(700, 12)) + rng.integers(0, 5, (700, 1)) * 1.5 + 30).astype(np.float32)
    labels = rng.integers(0, 6, 700)
    assert silhouette(x, labels, chunk=128) == pytest.approx(silhouette_score(x, labels), abs=1e-5)
    assign, _ = kmeans(x, 5, seed)
    assert silhouette(x, assign) == pytest.approx(silhouette_score(x, assign), abs=1e-5)


def test_silhouette_singletons_and_label_ids():
    x = np.array([[0, 0], [0, 1], [5, 5], [5, 6], [20, 20]], np.float32)
    labels = np.array([7, 7, 3, 3, 11])  # arbitrary ids; one singleton (s = 0 there)
    assert silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-6)


def test_kmeans_finds_separated_blobs():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = (np.eye(3)[y] * 20 + rng.normal(size=(300, 3))).astype(np.float32)
    assign, centres = kmeans(x, 3, seed=0)
    # same partition up to relabelling, centres at the blob means
    assert len({(a, b) for a, b in zip(assign, y)}) == 3
    for c in range(3):
        np.testing.assert_allclose(centres[c], x[assign == c].mean(0), atol=1e-3)
