"""Exact nearest and most distant neighbours in L2 with faiss, retrieval precision and kNN anomaly scores.

All arrays are float32 ``(N, D)``; indices refer to rows of the reference set.
"""

from __future__ import annotations

import numpy as np

from viclab.config import EVAL_DEFAULTS as _DEFAULT
from viclab.core.errors import ViclabError


def check_k(name: str, k: int, available: int, what: str) -> None:
    """Refuse a neighbour count the reference set cannot supply (never clamp it silently)."""
    if k > available:
        raise ViclabError(f"{name} = {k} asks for more neighbours than the {available} {what}; use at most "
                          f"{available}")


def _f32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32))


def nearest(reference, queries, k: int, exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest reference rows of each query (exact L2, faiss ``IndexFlatL2``).

    Args:
        reference: ``(N, D)``; queries: ``(M, D)``; k: neighbours per query.
        exclude: ``(M,)`` a reference index to skip per query (the query itself when queries are drawn from the
            reference set), or ``None``.

    Returns:
        ``(distances, indices)``, each ``(M, k)``, nearest first; distances are L2 (not squared).
    """
    import faiss

    ref, q = _f32(reference), _f32(queries)
    index = faiss.IndexFlatL2(ref.shape[1])
    index.add(ref)
    d2, idx = index.search(q, min(k + (exclude is not None), len(ref)))
    if exclude is not None:
        d2, idx = _drop(d2, idx, np.asarray(exclude), k)
    return np.sqrt(np.maximum(d2, 0)), idx


def farthest(reference, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most distant reference rows of each query, exactly, with faiss.

    ``||q - x||^2 = ||q||^2 + (||x||^2 - 2 q.x)``; the bracket is an inner product of ``[x, ||x||^2]`` with
    ``[-2q, 1]``, so a maximum-inner-product search over the augmented vectors returns the farthest points.

    Returns:
        ``(distances, indices)``, each ``(M, k)``, farthest first.
    """
    import faiss

    ref, q = _f32(reference), _f32(queries)
    ref_aug = np.hstack([ref, (ref.astype(np.float64) ** 2).sum(1, keepdims=True).astype(np.float32)])
    q_aug = np.hstack([-2 * q, np.ones((len(q), 1), np.float32)])
    index = faiss.IndexFlatIP(ref_aug.shape[1])
    index.add(ref_aug)
    score, idx = index.search(q_aug, min(k, len(ref)))
    d2 = score + (q.astype(np.float64) ** 2).sum(1, keepdims=True)
    return np.sqrt(np.maximum(d2, 0)).astype(np.float32), idx


def knn_anomaly_scores(reference, queries, k: int = _DEFAULT.anomaly_k) -> np.ndarray:
    """Anomaly score (spec A1) of test representations ``queries`` ``(M, D)``: their mean L2 distance to the ``k``
    nearest ``reference`` ``(N, D)`` normal ones (training representations) -> ``(M,)`` float32, larger is more
    anomalous. Their ROC and intervals live in :mod:`viclab.core.metrics`."""
    return nearest(reference, queries, k)[0].mean(1)


def _drop(d2: np.ndarray, idx: np.ndarray, exclude: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's excluded index (or, if absent, its last column) to keep ``k``."""
    keep = idx != exclude[:, None]
    missing = keep.all(1)
    keep[missing, -1] = False
    return d2[keep].reshape(len(idx), -1)[:, :k], idx[keep].reshape(len(idx), -1)[:, :k]


def one_query_per_class(labels: np.ndarray, seed: int = _DEFAULT.seed) -> np.ndarray:
    """A seeded random index of each class present in ``labels``, in class order."""
    rng = np.random.default_rng(seed)
    return np.array([rng.choice(np.flatnonzero(labels == c)) for c in np.unique(labels)])


def precision_at_k(features, labels, k: int = _DEFAULT.retrieval_k, queries: int = _DEFAULT.precision_queries,
                   seed: int = _DEFAULT.seed) -> float:
    """Mean share of each query's ``k`` nearest other images that have the query's class.

    ``features`` ``(N, D)``, ``labels`` ``(N,)``; ``queries`` seeded random rows serve as queries (all if ``>= N``).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    q = np.arange(len(labels)) if queries >= len(labels) else rng.choice(len(labels), queries, replace=False)
    _, idx = nearest(features, np.asarray(features)[q], k, exclude=q)
    return float((labels[idx] == labels[q, None]).mean())
