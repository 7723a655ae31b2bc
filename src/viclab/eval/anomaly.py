"""kNN-density anomaly detection (spec A1-A2): distance scores and the ROC."""

from __future__ import annotations

import numpy as np

from viclab.config import EVAL_DEFAULTS as _DEFAULT
from viclab.eval.neighbors import nearest


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


def roc(labels, scores) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve and its area for binary ``labels`` (1 = anomaly) and ``scores`` (higher = more anomalous).

    Returns:
        ``(false positive rates, true positive rates, AUROC)`` (sklearn's ``roc_curve``
        and ``roc_auc_score``).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = np.asarray(labels), np.asarray(scores)
    if len(np.unique(labels)) != 2:
        raise ValueError("the ROC needs both normal (0) and anomalous (1) test points")
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, float(roc_auc_score(labels, scores))
