"""Detection metrics: AUROC, AUPR, partial AUC, curves, and thresholds calibrated on normal data.

Convention throughout: ``labels`` are 0 (normal) / 1 (anomaly), ``scores`` are higher for
more anomalous points, and the decision rule is ``score > threshold`` means anomalous.
"""

from __future__ import annotations

import math

import numpy as np

from viclab.errors import ViclabError
from viclab.eval.anomaly import auroc_interval, checked_scores

__all__ = ["auroc_interval", "curves", "detection_metrics", "rates_at", "threshold_at_fpr"]


def detection_metrics(labels, scores, max_fpr: float = 0.1) -> dict[str, float]:
    """AUROC, AUPR and the partial AUC up to ``max_fpr``.

    Args:
        labels: ``(M,)`` 0 normal / 1 anomaly.
        scores: ``(M,)`` higher = more anomalous.
        max_fpr: upper false-positive rate of the partial AUC, in ``(0, 1]``.

    Returns:
        ``{"auroc", "aupr", "pauc", "n_normal", "n_anomalous", "max_fpr"}``. ``aupr`` is sklearn's
        average precision (anomaly = positive class); ``pauc`` is the McClish-standardised partial
        AUC (``roc_auc_score(..., max_fpr=max_fpr)``, the DCASE 2020 Task 2 convention): 0.5 for a
        chance detector and 1 for a perfect one, whatever ``max_fpr``.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, scores = checked_scores(labels, scores)
    if not 0 < max_fpr <= 1:
        raise ViclabError(f"max_fpr = {max_fpr} must lie in (0, 1]; the DCASE convention is 0.1")
    n_anomalous = int(labels.sum())
    return {"auroc": float(roc_auc_score(labels, scores)),
            "aupr": float(average_precision_score(labels, scores)),
            "pauc": float(roc_auc_score(labels, scores, max_fpr=max_fpr)),
            "n_normal": float(len(labels) - n_anomalous),
            "n_anomalous": float(n_anomalous),
            "max_fpr": float(max_fpr)}


def curves(labels, scores) -> dict[str, np.ndarray]:
    """The ROC and precision-recall curves (sklearn's ``roc_curve`` and ``precision_recall_curve``).

    Returns:
        ``{"fpr", "tpr"}`` (ROC, from ``(0, 0)`` to ``(1, 1)``) and ``{"recall", "precision"}``
        (decreasing recall, ending at ``(0, 1)``), each a 1-D float array.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    labels, scores = checked_scores(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr, "recall": recall, "precision": precision}


def threshold_at_fpr(normal_scores, fpr: float) -> float:
    """The smallest threshold whose false-positive rate on held-out normal data is at most ``fpr``.

    With ``n`` normal scores, at most ``k = floor(fpr * n)`` of them may lie strictly above the
    threshold; the smallest such threshold is the ``(k + 1)``-th largest score (with ``fpr = 0``
    the maximum). Scores tied with it are not flagged, since the rule is ``score > t``.

    Args:
        normal_scores: ``(N,)`` scores of normal data not used for training.
        fpr: target false-positive rate in ``[0, 1)``.
    """
    s = np.sort(np.asarray(normal_scores, dtype=np.float64).ravel())
    if not 0 <= fpr < 1:
        raise ViclabError(f"fpr = {fpr} must lie in [0, 1); e.g. 0.05 flags 5% of normal data")
    if s.size == 0:
        raise ViclabError("no normal scores to calibrate the threshold on; hold out some normal data")
    if not np.isfinite(s).all():
        raise ViclabError("some normal scores are NaN or infinite; check the model before calibrating")
    n = s.size
    k = math.floor(fpr * n)
    if (k + 1) / n <= fpr:  # fpr * n rounded just below an integer (e.g. 0.29 * 100)
        k += 1
    return float(s[n - 1 - k])


def rates_at(labels, scores, threshold: float) -> dict[str, float]:
    """Confusion counts and rates of the rule ``score > threshold`` (anomaly = positive).

    Returns:
        ``{"tpr", "fpr", "precision", "tp", "fp", "tn", "fn"}``; ``precision`` is 0 when
        nothing is flagged (sklearn's ``zero_division`` default).
    """
    labels, scores = checked_scores(labels, scores)
    flagged = scores > threshold
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    tn = int((~flagged & (labels == 0)).sum())
    return {"tpr": tp / (tp + fn), "fpr": fp / (fp + tn), "precision": tp / (tp + fp) if tp + fp else 0.0,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}
