"""K-means on representations, the exact silhouette score (in chunks), and 2-D maps: PCA and t-SNE (openTSNE)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from viclab.config import EVAL_DEFAULTS as _DEFAULT
from viclab.core.hashing import digest

# This process's last t-SNE embeddings by content: a model's S2 map and its cluster figure (C2) draw the same points,
# so the second asks for an embedding already made (t-SNE of 5,000 points takes ~25 s on 2 cores).
_EMBEDDINGS: dict[str, Any] = {}
_KEEP = 4


def kmeans(features, k: int = _DEFAULT.clusters, seed: int = _DEFAULT.seed) -> tuple[np.ndarray, np.ndarray]:
    """K-means of ``features`` ``(N, D)`` (sklearn, k-means++ initialisation, best of 3 starts) -> ``(assignments
    (N,) int64, centres (k, D) float32)``."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(np.asarray(features, dtype=np.float32))
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


def silhouette(features, assignments, chunk: int = 1024) -> float:
    """Mean silhouette coefficient of ``features`` ``(N, D)`` (in their D dimensions) in clusters ``assignments``.

    For each point, ``a`` is its mean L2 distance to the other members of its cluster and ``b`` the smallest mean
    distance to another cluster's members; ``s = (b - a) / max(a, b)``, and 0 for a point alone in its cluster
    (sklearn's definition). Exact: all N^2 distances, a chunk of rows at a time, so 50,000 points take seconds.
    """
    x = torch.as_tensor(np.asarray(features), dtype=torch.float32)
    x = x - x.mean(0)  # distances are unchanged; centring shrinks the cancellation error below
    lab = torch.as_tensor(np.asarray(assignments), dtype=torch.int64)
    ids, lab = torch.unique(lab, return_inverse=True)
    if len(ids) < 2:
        raise ValueError("the silhouette needs at least 2 clusters")
    onehot = torch.nn.functional.one_hot(lab, len(ids)).float()
    counts = onehot.sum(0).double()
    sq = x.pow(2).sum(1)
    sums = torch.empty(len(x), len(ids), dtype=torch.float64)
    for i in range(0, len(x), chunk):
        # ||a||^2 + ||b||^2 - 2 a.b, in place after one matmul (addmm's broadcast bias is slower)
        d = (x[i:i + chunk] @ x.T).mul_(-2).add_(sq[None, :]).add_(sq[i:i + chunk, None])
        d.diagonal(offset=i).zero_()  # a point's distance to itself, free of rounding
        sums[i:i + chunk] = (d.clamp_min_(0).sqrt_() @ onehot).double()
    own = counts[lab]
    a = sums.gather(1, lab[:, None]).squeeze(1) / (own - 1).clamp_min(1)
    others = (sums / counts).scatter(1, lab[:, None], float("inf"))
    b = others.min(1).values
    coef = (b - a) / torch.maximum(a, b)
    coef[own == 1] = 0.0
    return float(coef.nan_to_num(0.0).mean())


def pca_2d(features) -> np.ndarray:
    """Project ``(N, D)`` features on their first two principal components -> ``(N, 2)``."""
    from sklearn.decomposition import PCA

    return PCA(n_components=2).fit_transform(np.asarray(features, dtype=np.float32)).astype(np.float32)


def tsne_sample(n: int, points: int, seed: int = _DEFAULT.seed) -> np.ndarray:
    """The sorted indices of the ``points`` of ``n`` that a t-SNE map draws: all of them, or a seeded sample."""
    if points >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, points, replace=False))


def tsne(features, seed: int = _DEFAULT.seed, n_jobs: int = -1):
    """t-SNE embedding of ``(N, D)`` features (openTSNE: perplexity 30, PCA initialisation): an
    ``openTSNE.TSNEEmbedding`` (``np.asarray`` of it is ``(N, 2)``) that places further points with ``.transform``.
    The same features and seed give the embedding made before (kept for this process's last few)."""
    from openTSNE import TSNE

    x = np.asarray(features, dtype=np.float32)
    key = digest([x, str(x.shape), str(seed)])
    if key not in _EMBEDDINGS:
        while len(_EMBEDDINGS) >= _KEEP:
            _EMBEDDINGS.pop(next(iter(_EMBEDDINGS)))
        _EMBEDDINGS[key] = TSNE(perplexity=min(30.0, max(2.0, (len(x) - 1) / 3)), initialization="pca",
                                n_jobs=n_jobs, random_state=seed, verbose=False).fit(x)
    return _EMBEDDINGS[key]


def tsne_2d(features, seed: int = _DEFAULT.seed) -> np.ndarray:
    """``(N, D)`` -> ``(N, 2)`` t-SNE coordinates."""
    return np.asarray(tsne(features, seed), dtype=np.float32)
