"""2-D maps of representations: PCA and t-SNE (openTSNE, FFT-accelerated)."""

from __future__ import annotations

import numpy as np

from viclab.config import EVAL_DEFAULTS as _DEFAULT


def pca_2d(features) -> np.ndarray:
    """Project ``(N, D)`` features on their first two principal components -> ``(N, 2)``."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2).fit_transform(np.asarray(features, dtype=np.float32)).astype(np.float32)


def tsne(features, seed: int = _DEFAULT.seed, n_jobs: int = -1):
    """t-SNE embedding of ``(N, D)`` features (openTSNE: perplexity 30, PCA initialisation).

    Returns:
        an ``openTSNE.TSNEEmbedding`` (``np.asarray`` of it is ``(N, 2)``), which can
        place further points with ``.transform(points)``.
    """
    from openTSNE import TSNE

    x = np.asarray(features, dtype=np.float32)
    return TSNE(perplexity=min(30.0, max(2.0, (len(x) - 1) / 3)), initialization="pca", n_jobs=n_jobs,
                random_state=seed, verbose=False).fit(x)


def tsne_2d(features, seed: int = _DEFAULT.seed) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` t-SNE coordinates."""
    return np.asarray(tsne(features, seed), dtype=np.float32)
