"""kNN-density anomaly scores (spec A1): the mean distance to the nearest normal representations.
Their ROC and intervals live in :mod:`viclab.core.metrics`."""

from __future__ import annotations

import numpy as np

from viclab.config import EVAL_DEFAULTS as _DEFAULT
from viclab.represent.neighbors import nearest


def knn_anomaly_scores(reference, queries, k: int = _DEFAULT.anomaly_k) -> np.ndarray:
    """Anomaly score: mean L2 distance to the ``k`` nearest reference representations (spec A1).

    Args:
        reference: ``(N, D)`` normal data (training representations).
        queries: ``(M, D)`` test representations.

    Returns:
        ``(M,)`` float32 scores; larger is more anomalous.
    """
    dist, _ = nearest(reference, queries, k)
    return dist.mean(1)
