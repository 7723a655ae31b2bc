"""Detection figures: readable PNGs, and the monitor's shading matches the anomalous runs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from viclab.core.errors import ViclabError
from viclab.plot import figures


def _assert_png(path, min_w: int = 400, min_h: int = 300) -> None:
    assert path.stat().st_size > 1000
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= min_w and im.height >= min_h


def test_roc_pr_png(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random(200) < 0.2).astype(int)
    dets = [(name, labels, rng.normal(labels * shift, 1.0)) for name, shift in [("knn", 2.0), ("monitor", 0.5)]]
    out = figures.roc_pr_png(dets, "two detectors", tmp_path / "sub" / "roc_pr.png")
    assert out == tmp_path / "sub" / "roc_pr.png"
    _assert_png(out, min_w=1000)
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left no debris


def test_true_runs():
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert figures.true_runs(mask) == [(0, 1), (4, 4), (6, 8)]
    assert figures.true_runs(np.zeros(5, bool)) == []
    assert figures.true_runs(np.ones(3, bool)) == [(0, 2)]


@pytest.mark.parametrize("mask", [
    [0, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1],  # four runs, one at the end
    [1] + [0] * 19,  # a single batch at the start
    [0] * 20,  # nothing anomalous
])
def test_monitor_png_shades_each_run(tmp_path, monkeypatch, mask):
    anomalous = np.array(mask, bool)
    rng = np.random.default_rng(1)
    terms = {k: rng.random(len(mask)) + 3 * anomalous for k in ("invariance", "variance", "covariance")}
    kept = {}
    real_save = figures.save_png
    monkeypatch.setattr(figures, "save_png", lambda fig, path: (kept.setdefault("fig", fig), real_save(fig, path))[1])
    out = figures.monitor_png(terms, anomalous, "monitor", tmp_path / "monitor.png")
    _assert_png(out)
    axes = kept["fig"].axes
    runs = figures.true_runs(anomalous)
    assert len(axes) == 3
    for ax in axes:
        assert len(ax.patches) == len(runs)
        # x extent in data units, whether axvspan made a Rectangle (matplotlib >= 3.9) or a Polygon
        xs = [p.get_patch_transform().transform(p.get_path().vertices)[:, 0] for p in ax.patches]
        spans = sorted((float(x.min()), float(x.max())) for x in xs)
        np.testing.assert_allclose(np.reshape(spans, (-1, 2)), np.reshape([(a - 0.5, b + 0.5) for a, b in runs],
                                                                          (-1, 2)))
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()] if runs else []
    assert labels.count("anomalous batches") == (1 if runs else 0)


def test_monitor_png_rejects_bad_terms(tmp_path):
    with pytest.raises(ViclabError):
        figures.monitor_png({"invariance": np.zeros(3)}, np.zeros(3, bool), "t", tmp_path / "m.png")
    terms = {k: np.zeros(4) for k in ("invariance", "variance", "covariance")}
    with pytest.raises(ViclabError):
        figures.monitor_png(terms, np.zeros(3, bool), "t", tmp_path / "m.png")


@pytest.mark.parametrize("threshold", [None, 1.2])
def test_score_hist_png(tmp_path, threshold):
    rng = np.random.default_rng(2)
    out = figures.score_hist_png(rng.normal(size=500), rng.normal(2, 1, size=40), threshold, "scores",
                                 tmp_path / "hist.png")
    _assert_png(out)
