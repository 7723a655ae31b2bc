"""Every figure viclab draws: scatter maps, image grids (the most anomalous items), ROC and precision-recall curves,
training curves, the VICReg-term monitor, score histograms, spectrograms.

Matplotlib's object API (no pyplot, no global backend); every file is written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from viclab.config.detect import TERMS  # the monitor's panels, top to bottom
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.io import atomic_write
from viclab.core.metrics import curves as _curves
from viclab.core.metrics import detection_metrics

_DPI = 130


def _figure(width: float, height: float, dpi: int = _DPI):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def save_png(fig, path: str | Path) -> Path:
    return atomic_write(path, lambda p: fig.savefig(p, format="png"))


def _palette(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _scatter(ax, points: np.ndarray, labels: np.ndarray, names: Sequence[str], size: float) -> None:
    colors = _palette(len(names))
    for c, name in enumerate(names):
        m = labels == c
        if m.any():
            ax.scatter(points[m, 0], points[m, 1], s=size, color=colors[c], label=name, linewidths=0, alpha=0.8)
    ax.set(xticks=[], yticks=[])


def _marker_size(n: int) -> float:
    return float(np.clip(8000 / max(n, 1), 2.0, 30))


def _legend(ax, fontsize: int = 8) -> None:
    """A legend whose markers are all one readable size, whatever the plotted sizes."""
    leg = ax.legend(fontsize=fontsize, loc="best", framealpha=0.8)
    for handle in leg.legend_handles:
        handle.set_sizes([30])


def scatter_png(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> Path:
    """2-D map ``(N, 2)`` coloured by ``labels`` ``(N,)`` (indices into ``classes``)."""
    fig = _figure(7, 6)
    ax = fig.add_subplot()
    _scatter(ax, points, labels, classes, _marker_size(len(points)))
    ax.set_title(title, fontsize=10)
    _legend(ax)
    return save_png(fig, path)


def scatter_html(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str, path: str | Path) -> Path:
    """The same map as an interactive, self-contained plotly page (hover shows class and index)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            fig.add_trace(go.Scattergl(x=points[idx, 0], y=points[idx, 1], mode="markers", name=name,
                                       marker={"size": 4}, customdata=idx,
                                       hovertemplate=f"{name}<br>index %{{customdata}}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", legend={"itemsizing": "constant"}, width=900, height=750)
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    return atomic_write(path, lambda p: p.write_text(html, encoding="utf-8"))


def cluster_png(points: np.ndarray, clusters: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                centres: np.ndarray, title: str, path: str | Path) -> Path:
    """Two panels of one 2-D map: coloured by cluster, and by class; cluster centres in black."""
    fig = _figure(13, 6)
    size = _marker_size(len(points))
    k = int(clusters.max()) + 1
    for i, (lab, names, what) in enumerate([(clusters, [f"cluster {c}" for c in range(k)], "K-means cluster"),
                                            (labels, list(classes), "class")]):
        ax = fig.add_subplot(1, 2, i + 1)
        _scatter(ax, points, lab, names, size)
        ax.scatter(centres[:, 0], centres[:, 1], s=90, c="black", marker="X", label="centre")
        ax.set_title(f"coloured by {what}")
        _legend(ax, fontsize=7)
    fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def _show(ax, image: Tensor, modality: str) -> None:
    if modality == "spectrogram":  # (1, n_mels, frames) in dB: low frequencies at the bottom
        ax.imshow(image[0].numpy(), origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set(xticks=[], yticks=[])


def image_grid_png(rows: Sequence[tuple[str, Sequence[Tensor], Sequence[str]]], title: str, path: str | Path,
                   modality: str) -> Path:
    """A grid of ``modality`` items (:attr:`viclab.data.ImageData.modality`), one row per entry of ``rows``: ``(row
    label, images (3, H, W) uint8 or spectrograms (1, n_mels, frames) float, one caption per image)``."""
    ncol = max(len(images) for _, images, _ in rows)
    fig = _figure(1.25 * ncol + 1.2, 1.35 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for r, (label, images, captions) in enumerate(rows):
        for ax, image, caption in zip(axes[r], images, captions):
            _show(ax, image, modality)
            ax.set_title(caption, fontsize=7)
        for ax in axes[r][len(images):]:
            ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title)
    return save_png(fig, path)


def most_anomalous(scores: np.ndarray, top: int) -> np.ndarray:
    """Indices of the ``top`` highest of ``(M,)`` scores, highest first (ties in index order)."""
    return np.argsort(-scores, kind="stable")[:top]


def top_anomalies_png(rows: Sequence[tuple[str, np.ndarray, Callable[[int], Tensor], Callable[[int, float], str]]],
                      top: int, title: str, path: str | Path, modality: str) -> Path:
    """The ``top`` most anomalous items of each detector or encoder, one row each (:func:`image_grid_png`): ``rows``
    of ``(row label, scores (M,), item(i) -> image, caption(i, score) -> str)``; higher score = more anomalous."""
    grid = []
    for label, scores, item, caption in rows:
        order = most_anomalous(scores, top)
        grid.append((label, [item(i) for i in order], [caption(i, scores[i]) for i in order]))
    return image_grid_png(grid, title, path, modality)


def roc_png(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], title: str, path: str | Path) -> Path:
    """ROC curves ``(name, fpr, tpr, auc)`` on one figure, AUC in the legend."""
    fig = _figure(6, 5.5)
    ax = fig.add_subplot()
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance (AUC = 0.5)")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title(title, fontsize=9, wrap=True)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


def curves_png(series: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], ylabel: str,
               title: str, path: str | Path) -> Path:
    """Training curves of one quantity ``ylabel`` (e.g. ``"invariance"``), one colour per run.

    Args:
        series: ``(name, train_step (N,), train_value (N,), test_step (M,), test_value (M,))``; each training batch
            is drawn faintly with its running mean on top, the test evaluations as connected markers.
    """
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    colors = _palette(max(len(series), 1))
    for (name, ts, tv, es, ev), color in zip(series, colors):
        if len(ts):
            window = max(1, len(tv) // 40)
            smooth = np.convolve(tv, np.ones(window) / window, mode="valid")
            ax.plot(ts, tv, color=color, lw=0.6, alpha=0.3)
            ax.plot(ts[window - 1:], smooth, color=color, lw=1.6, label=f"{name}: train (per batch)")
        if len(es):
            ax.plot(es, ev, color=color, marker="o", ls="--", lw=1.2, ms=5, label=f"{name}: test (per epoch)")
    flat = np.concatenate([np.asarray(v) for _, _, tv, _, ev in series for v in (tv, ev)] or [np.zeros(0)])
    if len(flat) and flat.min() > 0 and flat.max() / flat.min() > 50:
        ax.set_yscale("log")  # e.g. mu = 0 drives invariance to ~0 while VICReg's stays near 1
    ax.set(xlabel="training step", ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_png(fig, path)


def lines_png(panels: Sequence[tuple[str, str, str, Sequence[tuple[str, np.ndarray, np.ndarray]]]],
              path: str | Path) -> Path:
    """Quantities against a budget or a setting, side by side: one panel per ``(title, xlabel, ylabel, series)``,
    each series ``(name, x (N,), y (N,))`` a line with markers (one point for an untrained detector); e.g. mean
    AUROC against CPU minutes of fitting per class, or A1's AUROC against training epochs."""
    fig = _figure(6.4 * len(panels), 4.2)
    for i, (title, xlabel, ylabel, series) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for (name, x, y), color in zip(series, _palette(max(len(series), 1))):
            order = np.argsort(x)
            ax.plot(np.asarray(x)[order], np.asarray(y)[order], color=color, marker="o", lw=1.4, ms=5, label=name)
        ax.set(xlabel=xlabel, ylabel=ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_png(fig, path)


def pngs_to_tensorboard(log_dir: str | Path, items: Sequence[tuple[str, str | Path]], step: int) -> None:
    """Add PNG figures to a TensorBoard log as images (``tag``, file) at ``step``."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    if not items:
        return
    try:
        with SummaryWriter(str(log_dir)) as tb:
            for tag, path in items:
                with Image.open(path) as im:
                    tb.add_image(tag, np.asarray(im.convert("RGB")), step, dataformats="HWC")
    except OSError as e:  # a read-only run folder: the figures are written already, only TensorBoard misses them
        warnings.warn(f"cannot add the figures to {log_dir} ({e.strerror or e}); they are in the output folder",
                      ViclabWarning, stacklevel=2)


def roc_pr_png(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str, path: str | Path,
               max_fpr: float = 0.1) -> Path:
    """ROC (left) and precision-recall (right) of several detectors on one figure: ``curves`` of ``(name, labels
    (M,) 0/1, scores (M,))`` per detector, higher score = more anomalous; ``max_fpr``: the shaded partial-AUC range."""
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
        ax.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1.01))
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
    """The per-batch VICReg ``terms`` (``"invariance"``, ``"variance"``, ``"covariance"``, each ``(T,)`` over ``T``
    batches) in three stacked panels; each run of True in ``anomalous`` ``(T,)`` is one shaded span in every panel."""
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
    """Overlaid histograms of normal ``(N,)`` and anomalous ``(M,)`` scores, with the threshold if given; densities
    on shared bins, so that classes of very different sizes compare."""
    normal, anomal = (np.asarray(s, dtype=np.float64).ravel() for s in (scores_normal, scores_anomalous))
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
    ax.set(xlabel="anomaly score", ylabel="density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return save_png(fig, path)


def spectrogram_panels_png(panels: Sequence[tuple[str, Tensor]], seconds: float, n_mels: int, title: str,
                           path: str | Path) -> Path:
    """Log-mel spectrograms (dB) ``panels`` of ``(name, (1, n_mels, frames) or (n_mels, frames))`` side by side on
    one colour scale (the loudest 80 dB), time in seconds (``seconds``: the duration the frames span)."""
    fig = _figure(4.2 * len(panels), 3.6, dpi=120)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    lo = min(float(p.min()) for _, p in panels)
    hi = max(float(p.max()) for _, p in panels)
    for ax, (name, spec) in zip(axes, panels):
        im = ax.imshow(spec.squeeze().numpy(), origin="lower", aspect="auto", cmap="magma", vmin=max(lo, hi - 80),
                       vmax=hi, extent=(0, seconds, 0, n_mels))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("seconds")
    axes[0].set_ylabel("mel band")
    fig.colorbar(im, ax=list(axes), label="dB", shrink=0.85)
    fig.suptitle(title, fontsize=10)
    return save_png(fig, path)
