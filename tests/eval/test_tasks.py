"""The evaluation tasks end to end on tiny fake data: files written, numbers vs references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, silhouette_score
from torch import nn

from viclab.config import Config, EvalConfig
from viclab.core.context import QUIET
from viclab.detect.anomaly import run_anomaly
from viclab.eval.tasks import run_cluster, run_plot, run_probe, run_retrieve
from viclab.represent.encode import Source, encoder_source, load_source, representations


def _dist(a, b):
    return np.sqrt(((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2).sum(-1))


def weighted_knn_votes(train_x, train_y, test_x, k: int, temperature: float, num_classes: int = 10) -> np.ndarray:
    """Brute force: a test point's ``k`` most cosine-similar training points vote ``exp(cos / T)`` for their class."""
    tr = train_x.astype(np.float64) / np.linalg.norm(train_x, axis=1, keepdims=True)
    te = test_x.astype(np.float64) / np.linalg.norm(test_x, axis=1, keepdims=True)
    votes = np.zeros((len(te), num_classes))
    for i, q in enumerate(te):
        sims = tr @ q
        for j in np.argsort(-sims, kind="stable")[:k]:
            votes[i, train_y[j]] += np.exp(sims[j] / temperature)
    return votes


def topk_bounds(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float]:
    """Top-k accuracy from class scores; ``(low, high)`` differ only where ties at the cut leave the hit to chance."""
    own = scores[np.arange(len(labels)), labels]
    above, level = (scores > own[:, None]).sum(1), (scores == own[:, None]).sum(1)  # level counts the label itself
    return float((above + level <= k).mean()), float((above < k).mean())


def _standardized(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, std = train.mean(0), np.maximum(train.std(0, ddof=1), 1e-6)
    return (train - mean) / std, (test - mean) / std


def _pixel_encoder() -> Source:
    """A seeded random linear map of the pixels: its cosine similarities spread over [-1, 1], unlike a trained CNN's
    (all near 1 on the tiny fixture), so there the kNN weights exp(cos / T) decide votes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 16))
    return encoder_source(module, 16, Config(), "pixels", "random-linear-pixels-seed-0")


@pytest.mark.parametrize("source, cfg", [
    ("tiny", EvalConfig()),  # weight decay chosen on a held-out tenth
    ("tiny", EvalConfig(knn_k=5, knn_temperature=0.5, probe_weight_decays=(1.0,))),  # one strong weight decay
    ("pixels", EvalConfig(knn_k=5, knn_temperature=0.07, probe_weight_decays=(0.1,))),  # where T matters
], ids=["tiny-defaults", "tiny-k5-wd1", "pixels-k5-wd0.1"])
def test_probe_numbers_match_references(tiny_run, tmp_path, source, cfg):
    run, root = tiny_run
    enc = load_source(run) if source == "tiny" else _pixel_encoder()
    run_probe(enc, tmp_path / "p", str(root), cfg=cfg, ctx=QUIET)
    saved = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert (saved["n_train"], saved["n_test"]) == (100, 20)  # the fixture: 5 x 20 fake training images, 20 test
    here = QUIET.reading(str(root))
    tr, te = representations(enc, "train", ctx=here), representations(enc, "test", ctx=here)
    # weighted kNN, exactly
    votes = weighted_knn_votes(tr.features, tr.labels, te.features, cfg.knn_k, cfg.knn_temperature)
    for k, key in ((1, "top1"), (5, "top5")):
        lo, hi = topk_bounds(votes, te.labels, k)
        assert lo - 1e-6 <= saved["knn"][key] <= hi + 1e-6, (key, saved["knn"][key], lo, hi)  # float32 means
    # linear probe: sklearn's multinomial logistic regression on the standardised features, at the chosen weight
    # decay. Ours minimises mean CE + wd / 2 ||W||^2, sklearn C * sum CE + ||W||^2 / 2: the same optimum for
    # C = 1 / (N wd). The two solvers stop at slightly different points of a nearly flat optimum (up to 256
    # features, 100 images), so a test image near a class boundary may go either way: allow one of the 20 to differ.
    from sklearn.linear_model import LogisticRegression

    wd = saved["linear"]["weight_decay"]
    assert wd in cfg.probe_weight_decays
    xtr, xte = _standardized(tr.features.astype(np.float64), te.features.astype(np.float64))
    sk = LogisticRegression(C=1 / (len(xtr) * wd), tol=1e-10, max_iter=10_000).fit(xtr, tr.labels)
    proba = np.zeros((len(xte), 10))
    proba[:, sk.classes_] = sk.predict_proba(xte)
    for k, key in ((1, "top1"), (5, "top5")):
        lo, hi = topk_bounds(proba, te.labels, k)
        assert lo - 1 / 20 - 1e-6 <= saved["linear"][key] <= hi + 1 / 20 + 1e-6, (key, saved["linear"][key], lo, hi)
    assert abs(saved["linear"]["train_top1"] - sk.score(xtr, tr.labels)) <= 1 / 100 + 1e-6


def test_default_out_is_the_run_folder(tiny_run):
    run, root = tiny_run
    run_plot(run, None, str(root), ctx=QUIET)
    for name in ("pca.png", "pca.html", "tsne.png", "tsne.html", "plot.json"):
        assert (run / "eval" / name).stat().st_size > 0
    assert "plotly" in (run / "eval" / "pca.html").read_text()[:5_000_000].lower()


def test_retrieval_matches_brute_force(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_retrieve(run, tmp_path, str(root), cfg=EvalConfig(retrieval_k=3), ctx=QUIET)
    x = representations(load_source(run), "train", ctx=QUIET.reading(str(root))).features
    d = _dist(x, x)
    for q in out["queries"]:
        row = d[q["index"]].copy()
        assert q["farthest"] == list(np.argsort(-row)[:3])
        row[q["index"]] = np.inf
        assert q["nearest"] == list(np.argsort(row)[:3])
    assert (tmp_path / "retrieval_nearest.png").exists() and (tmp_path / "retrieval_farthest.png").exists()


def test_anomaly_compares_runs(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_anomaly([run, "random:small_cnn"], tmp_path, str(root), cfg=EvalConfig(anomaly_k=2), ctx=QUIET)
    assert [r["name"] for r in out["runs"]] == ["tiny", "random small_cnn"]
    enc = load_source(run)
    train = representations(enc, "train", ctx=QUIET.reading(str(root))).features
    test = np.concatenate([representations(enc, "test", ctx=QUIET.reading(str(root))).features,
                           representations(enc, "test", "mnist", str(root)).features])
    expect = np.sort(_dist(test, train), 1)[:, :2].mean(1)
    scores = np.load(tmp_path / "scores-tiny.npy")
    np.testing.assert_allclose(scores, expect, rtol=1e-4)
    truth = np.r_[np.zeros(20), np.ones(12)]
    assert out["runs"][0]["auroc"] == pytest.approx(roc_auc_score(truth, expect))
    low, high = out["runs"][0]["auroc_interval"]  # the 95% bootstrap interval
    assert low <= out["runs"][0]["auroc"] <= high
    rows = list(csv.DictReader(open(tmp_path / "scores-tiny.csv")))
    assert len(rows) == 32 and rows[20]["dataset"] == "mnist" and rows[20]["index"] == "0"
    top = out["runs"][0]["top"]
    assert len(top) == 7 and top[0]["score"] == pytest.approx(expect.max(), rel=1e-5)
    for name in ("roc.png", "top_anomalies.png", "anomaly.json", "scores-random_small_cnn.npy"):
        assert (tmp_path / name).exists()


def test_cluster_silhouette_vs_sklearn(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_cluster(run, tmp_path, str(root), cfg=EvalConfig(clusters=4), ctx=QUIET)
    x = representations(load_source(run), "train", ctx=QUIET.reading(str(root))).features
    from viclab.eval.cluster import kmeans

    assign, _ = kmeans(x, 4, 0)
    assert out["silhouette"] == pytest.approx(silhouette_score(x, assign), abs=1e-5)
    assert sum(out["cluster_sizes"]) == 100 and (tmp_path / "clusters.png").exists()


def test_plot_and_cluster_share_one_tsne_of_the_same_test_sample(tiny_run, tmp_path, monkeypatch):
    """The cluster figure draws the S2 t-SNE map's points: one t-SNE fit for both tasks, on the seeded sample of
    ``tsne_points`` test representations."""
    import openTSNE

    from viclab.eval import cluster

    run, root = tiny_run
    fitted, fit = [], openTSNE.TSNE.fit
    monkeypatch.setattr(openTSNE.TSNE, "fit", lambda self, x, *a, **k: fitted.append(x.copy()) or fit(self, x, *a, **k))
    monkeypatch.setattr(cluster, "_EMBEDDINGS", {})
    cfg = EvalConfig(clusters=3, tsne_points=12)
    plot = run_plot(run, tmp_path / "p", str(root), cfg=cfg, ctx=QUIET)
    out = run_cluster(run, tmp_path / "c", str(root), cfg=cfg, ctx=QUIET)
    test = representations(load_source(run), "test", ctx=QUIET.reading(str(root))).features
    sample = np.sort(np.random.default_rng(0).choice(len(test), 12, replace=False))
    assert len(fitted) == 1 and plot["tsne_points"] == out["tsne_points"] == 12
    np.testing.assert_array_equal(fitted[0], test[sample].astype(np.float32))
    assert plot["n_points"] == len(test) == 20  # PCA draws them all


def test_anomaly_writes_only_to_the_first_runs_folder(tiny_run, tmp_path, monkeypatch):
    run, root = tiny_run
    monkeypatch.chdir(tmp_path)
    run_anomaly([run, "random:small_cnn"], None, str(root), ctx=QUIET)
    assert (run / "eval" / "roc.png").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]  # no ./eval-random-small_cnn left behind
