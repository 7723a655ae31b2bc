"""kNN-density anomaly detection (spec A1-A2): distance scores, the ROC, and the AUROC's bootstrap interval
(the home of both, for ``viclab anomaly`` and the detectors alike)."""

from __future__ import annotations

import numpy as np

from viclab.config import EVAL_DEFAULTS as _DEFAULT
from viclab.errors import ViclabError
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


def checked_scores(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` ``(M,)`` as int and ``scores`` ``(M,)`` as float64, or a one-line ViclabError."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if labels.ndim != 1 or scores.shape != labels.shape:
        raise ViclabError(f"labels {labels.shape} and scores {scores.shape} must be 1-D and of equal length; "
                          "pass one label and one score per test point")
    if not np.isin(labels, (0, 1)).all():
        raise ViclabError("labels must be 0 (normal) or 1 (anomaly); map the test labels to 0/1 first")
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise ViclabError(f"{bad} anomaly score(s) are NaN or infinite; check the representations "
                          "(a diverged model) before scoring")
    labels = labels.astype(np.int64)
    if labels.min(initial=1) == labels.max(initial=0):
        raise ViclabError("detection metrics need both normal (0) and anomalous (1) test points; "
                          "add the missing class to the test set")
    return labels, scores


def auroc_interval(labels, scores, level: float = 0.95, reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """A stratified bootstrap percentile interval of the AUROC: the normal and the anomalous points
    are resampled separately (each with replacement, their counts kept), ``reps`` times.

    For small test sets (a few clips per machine ID) this says how much the AUROC itself could move.

    Returns:
        ``(low, high)`` at ``level``.
    """
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
    """``(reps,)`` bootstrap AUROCs by the Mann-Whitney rank sum, one resample at a time (large test
    sets, where the pairwise table would not fit: 9,000 x 1,000 CIFAR-10 test images)."""
    from scipy.stats import rankdata

    n_pos, n_neg = len(pos), len(neg)
    aucs = np.empty(reps)
    for r in range(reps):
        both = np.concatenate([pos[rng.integers(0, n_pos, n_pos)], neg[rng.integers(0, n_neg, n_neg)]])
        ranks = rankdata(both)  # ties get their mean rank: a tie counts half, as in the AUROC
        aucs[r] = (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return aucs
