"""Figures of anomaly detection: ROC and precision-recall, the VICReg-term monitor, score histograms.

Built on the evaluation figures' helpers (object API, Agg, atomic PNG writes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from viclab.core.errors import ViclabError
from viclab.core.metrics import curves as _curves
from viclab.core.metrics import detection_metrics
from viclab.plot.figures import _figure, _palette, save_png

TERMS = ("invariance", "variance", "covariance")


def roc_pr_png(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str, path: str | Path,
               max_fpr: float = 0.1) -> Path:
    """ROC (left) and precision-recall (right) of several detectors on one figure.

    Args:
        curves: ``(name, labels (M,) 0/1, scores (M,))`` per detector, higher score = more anomalous.
        max_fpr: the partial-AUC range, shaded on the ROC panel.
    """
    fig = _figure(12, 5.2)
    roc_ax, pr_ax = fig.subplots(1, 2)
    roc_ax.axvspan(0, max_fpr, color="0.85", zorder=0, label=f"FPR ≤ {max_fpr:g} (pAUC range)")
    prevalences = {}
    for (name, labels, scores), color in zip(curves, _palette(max(len(curves), 1))):
        m, c = detection_metrics(labels, scores, max_fpr=max_fpr), _curves(labels, scores)
        roc_ax.plot(c["fpr"], c["tpr"], color=color, lw=1.8,
                    label=f"{name} (AUROC {m['auroc']:.3f}, pAUC {m['pauc']:.3f})")
        pr_ax.plot(c["recall"], c["precision"], color=color, lw=1.8, drawstyle="steps-post",
                   label=f"{name} (AUPR {m['aupr']:.3f})")
        prevalences.setdefault(round(m["n_anomalous"] / (m["n_normal"] + m["n_anomalous"]), 6), color)
    roc_ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance")
    # A chance detector's precision is the prevalence; detectors on different test sets get their own line.
    one = len(prevalences) == 1
    for p, color in prevalences.items():
        pr_ax.axhline(p, ls="--", lw=1, color="grey" if one else color, label=f"prevalence {p:.3f} (chance)")
    for ax, (xl, yl), where in [(roc_ax, ("false positive rate", "true positive rate"), "lower right"),
                                (pr_ax, ("recall", "precision"), "lower left")]:
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
        ax.legend(loc=where, fontsize=7)
    roc_ax.set_title("ROC")
    pr_ax.set_title("precision-recall (anomaly = positive)")
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Contiguous runs of True in ``mask`` ``(T,)`` as ``(first, last)`` indices, inclusive."""
    padded = np.concatenate([[0], np.asarray(mask, dtype=np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2])]


def monitor_png(terms: dict[str, np.ndarray], anomalous: np.ndarray, title: str, path: str | Path) -> Path:
    """The per-batch VICReg terms in three stacked panels, anomalous batches shaded.

    Args:
        terms: ``"invariance"``, ``"variance"``, ``"covariance"``, each ``(T,)`` over ``T`` batches.
        anomalous: ``(T,)`` bool; each run of True is one shaded span in every panel.
    """
    anomalous = np.asarray(anomalous, dtype=bool)
    missing = [k for k in TERMS if k not in terms]
    if missing:
        raise ViclabError(f"monitor terms lack {', '.join(missing)}; pass all of {', '.join(TERMS)}")
    if any(np.shape(terms[k]) != anomalous.shape or anomalous.ndim != 1 for k in TERMS):
        raise ViclabError("each monitor term and the anomalous mask must be (T,) over the same T batches")
    fig = _figure(8, 7)
    axes = fig.subplots(3, 1, sharex=True)
    x = np.arange(len(anomalous))
    runs = true_runs(anomalous)
    for i, (ax, key) in enumerate(zip(axes, TERMS)):
        for j, (a, b) in enumerate(runs):
            # Half a batch either side, so that a single flagged batch is a visible band.
            ax.axvspan(a - 0.5, b + 0.5, color="tab:red", alpha=0.2, lw=0,
                       label="anomalous batches" if i == j == 0 else None)
        ax.plot(x, np.asarray(terms[key], dtype=np.float64), color="tab:blue", lw=1.2)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("batch index")
    if runs:
        axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def score_hist_png(scores_normal: np.ndarray, scores_anomalous: np.ndarray, threshold: float | None, title: str,
                   path: str | Path) -> Path:
    """Overlaid histograms of normal ``(N,)`` and anomalous ``(M,)`` scores, with the threshold if given.

    Both are drawn as densities on shared bins, so that classes of very different sizes compare.
    """
    normal = np.asarray(scores_normal, dtype=np.float64).ravel()
    anomal = np.asarray(scores_anomalous, dtype=np.float64).ravel()
    both = np.concatenate([normal, anomal])
    if both.size == 0 or not np.isfinite(both).all():
        raise ViclabError("score histogram needs at least one finite score; check the scores passed in")
    bins = np.histogram_bin_edges(both, bins=min(60, max(10, int(np.sqrt(both.size)))))
    fig = _figure(7, 4.5)
    ax = fig.add_subplot()
    for scores, name, color in [(normal, "normal", "tab:blue"), (anomal, "anomalous", "tab:red")]:
        if scores.size:
            ax.hist(scores, bins=bins, density=True, alpha=0.5, color=color, label=f"{name} (n = {scores.size})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", lw=1.5, label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_png(fig, path)
