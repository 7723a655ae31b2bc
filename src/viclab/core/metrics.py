"""The one home of detection and accuracy statistics: ROC, AUROC and its bootstrap interval, AUPR, partial AUC,
thresholds calibrated on normal data, and the binomial intervals of accuracies.

Convention throughout: ``labels`` ``(M,)`` are 0 (normal) / 1 (anomaly), ``scores`` ``(M,)`` are higher for more
anomalous points, and the decision rule is ``score > threshold`` means anomalous.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from viclab.core.errors import ViclabError


def sampling_error(p: float, n: int) -> float:
    """Binomial standard error of an accuracy ``p`` measured on ``n`` test images."""
    return math.sqrt(max(p * (1 - p), 1e-12) / max(n, 1))


def binomial_interval(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` at ``level`` of an accuracy ``p`` measured on ``n`` independent test
    items; ``(0, 1)`` when ``n`` is 0. Unlike ``p +/- z * sampling_error`` it stays inside ``[0, 1]`` and is not
    empty at ``p = 0`` or ``1`` (where a tiny test set says least)."""
    if n <= 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + level / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def roc(labels, scores) -> tuple[np.ndarray, np.ndarray, float]:
    """ROC curve and its area: ``(false positive rates, true positive rates, AUROC)`` (sklearn's ``roc_curve`` and
    ``roc_auc_score``)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = np.asarray(labels), np.asarray(scores)
    if len(np.unique(labels)) != 2:
        raise ValueError("the ROC needs both normal (0) and anomalous (1) test points")
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr, float(roc_auc_score(labels, scores))


def checked_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` ``(M,)`` as int and ``scores`` ``(M,)`` as float64, or a one-line ViclabError."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ViclabError(f"labels {labels.shape} and scores {scores.shape} must be 1-D and of equal length; "
                          "pass one label and one score per test point")
    if not np.isin(labels, (0, 1)).all():
        raise ViclabError("labels must be 0 (normal) or 1 (anomaly); map the test labels to 0/1 first")
    if not np.isfinite(scores).all():
        raise ViclabError(f"{int((~np.isfinite(scores)).sum())} anomaly score(s) are NaN or infinite; check the "
                          "representations (a diverged model) before scoring")
    labels = labels.astype(np.int64)
    if labels.min(initial=1) == labels.max(initial=0):
        raise ViclabError("detection metrics need both normal (0) and anomalous (1) test points; "
                          "add the missing class to the test set")
    return labels, scores


def auroc_interval(labels, scores, level: float = 0.95, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A stratified bootstrap percentile interval ``(low, high)`` of the AUROC at ``level``: the normal and the
    anomalous points are resampled separately (with replacement, their counts kept), ``reps`` times. For small test
    sets (a few clips per machine ID) this says how much the AUROC itself could move."""
    labels, scores = checked_scores(labels, scores)
    pos, neg = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(seed)
    aucs = _pairwise_aucs(pos, neg, reps, rng) if len(pos) * len(neg) <= PAIRWISE_LIMIT else \
        _ranked_aucs(pos, neg, reps, rng)
    alpha = (1 - level) / 2
    return float(np.quantile(aucs, alpha)), float(np.quantile(aucs, 1 - alpha))


PAIRWISE_LIMIT = 1_000_000  # anomalous x normal pairs up to which the (pairs,) win table is cheaper than sorting


def _pairwise_aucs(pos: np.ndarray, neg: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps,)`` bootstrap AUROCs from the table of pairwise wins (small test sets: a few clips per ID)."""
    # Pairwise wins of each anomalous point over each normal one (ties count half): the AUROC is their mean.
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    rows = rng.integers(0, len(pos), (reps, len(pos)))
    cols = rng.integers(0, len(neg), (reps, len(neg)))
    # mean of wins[rows][:, cols] per rep = (row counts) . wins . (col counts) / (n_pos * n_neg)
    row_counts = np.stack([np.bincount(r, minlength=len(pos)) for r in rows])
    col_counts = np.stack([np.bincount(c, minlength=len(neg)) for c in cols])
    return np.einsum("rp,pn,rn->r", row_counts, wins, col_counts) / (len(pos) * len(neg))


def _ranked_aucs(pos: np.ndarray, neg: np.ndarray, reps: int, rng: np.random.Generator) -> np.ndarray:
    """``(reps,)`` bootstrap AUROCs by the Mann-Whitney rank sum, one resample at a time (large test sets)."""
    from scipy.stats import rankdata

    n_pos, n_neg = len(pos), len(neg)
    aucs = np.empty(reps)
    for r in range(reps):
        both = np.concatenate([pos[rng.integers(0, n_pos, n_pos)], neg[rng.integers(0, n_neg, n_neg)]])
        ranks = rankdata(both)  # ties get their mean rank: a tie counts half, as in the AUROC
        aucs[r] = (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs


def detection_metrics(labels, scores, max_fpr: float = 0.1) -> dict[str, float]:
    """AUROC, AUPR and the partial AUC up to the false-positive rate ``max_fpr`` (in ``(0, 1]``).

    Returns:
        ``{"auroc", "aupr", "pauc", "n_normal", "n_anomalous", "max_fpr"}``. ``aupr`` is sklearn's average precision
        (anomaly = positive class); ``pauc`` is the McClish-standardised partial AUC (``roc_auc_score(...,
        max_fpr=max_fpr)``, the DCASE 2020 Task 2 convention): 0.5 for a chance detector and 1 for a perfect one.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    labels, scores = checked_scores(labels, scores)
    if not 0 < max_fpr <= 1:
        raise ViclabError(f"max_fpr = {max_fpr} must lie in (0, 1]; the DCASE convention is 0.1")
    n_anomalous = int(labels.sum())
    return {"auroc": float(roc_auc_score(labels, scores)), "aupr": float(average_precision_score(labels, scores)),
            "pauc": float(roc_auc_score(labels, scores, max_fpr=max_fpr)), "n_normal": float(len(labels) - n_anomalous),
            "n_anomalous": float(n_anomalous), "max_fpr": float(max_fpr)}


def curves(labels, scores) -> dict[str, np.ndarray]:
    """The ROC and precision-recall curves (sklearn's ``roc_curve`` and ``precision_recall_curve``): ``{"fpr",
    "tpr"}`` (from ``(0, 0)`` to ``(1, 1)``) and ``{"recall", "precision"}`` (decreasing recall, ending at ``(0, 1)``),
    each a 1-D float array."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    labels, scores = checked_scores(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    precision, recall, _ = precision_recall_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr, "recall": recall, "precision": precision}


def threshold_at_fpr(normal_scores, fpr: float) -> float:
    """The smallest threshold whose false-positive rate ``fpr`` (in ``[0, 1)``) on held-out normal data
    ``normal_scores`` ``(N,)`` (not used for training) is at most ``fpr``.

    At most ``k = floor(fpr * N)`` scores may lie strictly above it, so it is the ``(k + 1)``-th largest score (with
    ``fpr = 0`` the maximum). Scores tied with it are not flagged, since the rule is ``score > t``.
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
    """Confusion counts and rates of the rule ``score > threshold`` (anomaly = positive): ``{"tpr", "fpr",
    "precision", "tp", "fp", "tn", "fn"}``; ``precision`` is 0 when nothing is flagged (sklearn's default)."""
    labels, scores = checked_scores(labels, scores)
    flagged, anomalous = scores > threshold, labels == 1
    tp, fp = int((flagged & anomalous).sum()), int((flagged & ~anomalous).sum())
    fn, tn = int((~flagged & anomalous).sum()), int((~flagged & ~anomalous).sum())
    return {"tpr": tp / (tp + fn), "fpr": fp / (fp + tn), "precision": tp / (tp + fp) if tp + fp else 0.0,
            "tp": tp, "fp": fp, "tn": tn, "fn": fn}
