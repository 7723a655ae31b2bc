"""Figures of the evaluation: scatter maps, image grids, ROC curves (PNG, and HTML for maps).

Matplotlib's object API (no pyplot, no global backend); every file is written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch import Tensor

from viclab.core.errors import ViclabWarning
from viclab.core.io import atomic_write

_DPI = 130


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


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
    ax.set_xticks([])
    ax.set_yticks([])


def _marker_size(n: int) -> float:
    return float(np.clip(8000 / max(n, 1), 2.0, 30))


def _legend(ax, fontsize: int = 8) -> None:
    """A legend whose markers are all one readable size, whatever the plotted sizes."""
    leg = ax.legend(fontsize=fontsize, loc="best", framealpha=0.8)
    for handle in leg.legend_handles:
        handle.set_sizes([30])


def scatter_png(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str,
                path: str | Path) -> Path:
    """2-D map ``(N, 2)`` coloured by ``labels`` ``(N,)`` (indices into ``classes``)."""
    fig = _figure(7, 6)
    ax = fig.add_subplot()
    _scatter(ax, points, labels, classes, _marker_size(len(points)))
    ax.set_title(title, fontsize=10)
    _legend(ax)
    return save_png(fig, path)


def scatter_html(points: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str,
                 path: str | Path) -> Path:
    """The same map as an interactive, self-contained plotly page (hover shows class and index)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if len(idx):
            fig.add_trace(go.Scattergl(x=points[idx, 0], y=points[idx, 1], mode="markers", name=name,
                                       marker={"size": 4}, customdata=idx,
                                       hovertemplate=f"{name}<br>index %{{customdata}}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", legend={"itemsizing": "constant"},
                      width=900, height=750)
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


def _show(ax, image: Tensor) -> None:
    if image.is_floating_point():  # a log-mel spectrogram (1, n_mels, frames) in dB: low frequencies at the bottom
        ax.imshow(image[0].numpy(), origin="lower", aspect="auto", cmap="magma", interpolation="nearest")
    else:
        ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid_png(rows: Sequence[tuple[str, Sequence[Tensor], Sequence[str]]], title: str,
                   path: str | Path) -> Path:
    """A grid of images, one row per entry.

    Args:
        rows: ``(row label, images (3, H, W) uint8 or spectrograms (1, n_mels, frames) float, one caption per image)``.
    """
    ncol = max(len(images) for _, images, _ in rows)
    fig = _figure(1.25 * ncol + 1.2, 1.35 * len(rows) + 0.5)
    axes = fig.subplots(len(rows), ncol, squeeze=False)
    for r, (label, images, captions) in enumerate(rows):
        for c in range(ncol):
            ax = axes[r][c]
            if c < len(images):
                _show(ax, images[c])
                ax.set_title(captions[c], fontsize=7)
            else:
                ax.axis("off")
        axes[r][0].set_ylabel(label, fontsize=8)
    fig.suptitle(title)
    return save_png(fig, path)


def roc_png(curves: Sequence[tuple[str, np.ndarray, np.ndarray, float]], title: str, path: str | Path) -> Path:
    """ROC curves ``(name, fpr, tpr, auc)`` on one figure, AUC in the legend."""
    fig = _figure(6, 5.5)
    ax = fig.add_subplot()
    for name, fpr, tpr, auc in curves:
        ax.plot(fpr, tpr, lw=1.8, label=f"{name} (AUC = {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="chance (AUC = 0.5)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=9, wrap=True)
    ax.legend(loc="lower right", fontsize=8)
    return save_png(fig, path)


def curves_png(series: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]], ylabel: str,
               title: str, path: str | Path) -> Path:
    """Training curves of one quantity, one colour per run.

    Args:
        series: ``(name, train_step (N,), train_value (N,), test_step (M,), test_value (M,))``;
            each training batch is drawn faintly with its running mean on top, the test
            evaluations as connected markers.
        ylabel: the quantity (e.g. ``"invariance"``).
    """
    fig = _figure(6.4, 4.2)
    ax = fig.add_subplot()
    colors = _palette(max(len(series), 1))
    values = []
    for (name, ts, tv, es, ev), color in zip(series, colors):
        if len(ts):
            window = max(1, len(tv) // 40)
            smooth = np.convolve(tv, np.ones(window) / window, mode="valid")
            ax.plot(ts, tv, color=color, lw=0.6, alpha=0.3)
            ax.plot(ts[window - 1:], smooth, color=color, lw=1.6, label=f"{name}: train (per batch)")
        if len(es):
            ax.plot(es, ev, color=color, marker="o", ls="--", lw=1.2, ms=5, label=f"{name}: test (per epoch)")
        values += [np.asarray(tv), np.asarray(ev)]
    flat = np.concatenate(values) if values else np.zeros(0)
    if len(flat) and flat.min() > 0 and flat.max() / flat.min() > 50:
        ax.set_yscale("log")  # e.g. mu = 0 drives invariance to ~0 while VICReg's stays near 1
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
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
