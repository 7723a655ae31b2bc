"""The evaluation tasks end to end on tiny fake data: files written, numbers vs references."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, silhouette_score

from viclab.config import EvalConfig
from viclab.eval.features import load_source, representations
from viclab.eval.tasks import run_anomaly, run_cluster, run_plot, run_probe, run_retrieve

QUIET = {"progress": False, "echo": lambda s: None}


def _dist(a, b):
    return np.sqrt(((a.astype(np.float64)[:, None] - b.astype(np.float64)[None]) ** 2).sum(-1))


def test_probe_writes_accuracies(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_probe(run, tmp_path / "p", str(root), **QUIET)
    saved = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert saved["linear"]["top1"] == out["linear"]["top1"]
    assert 0 <= saved["linear"]["top1"] <= saved["linear"]["top5"] <= 1
    assert saved["n_train"] == 100 and saved["n_test"] == 20 and saved["weights_sha256"]


def test_default_out_is_the_run_folder(tiny_run):
    run, root = tiny_run
    run_plot(run, None, str(root), **QUIET)
    for name in ("pca.png", "pca.html", "tsne.png", "tsne.html", "plot.json"):
        assert (run / "eval" / name).stat().st_size > 0
    assert "plotly" in (run / "eval" / "pca.html").read_text()[:5_000_000].lower()


def test_retrieval_matches_brute_force(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_retrieve(run, tmp_path, str(root), cfg=EvalConfig(retrieval_k=3), **QUIET)
    x = representations(load_source(run), "train", data_dir=str(root)).features
    d = _dist(x, x)
    for q in out["queries"]:
        row = d[q["index"]].copy()
        assert q["farthest"] == list(np.argsort(-row)[:3])
        row[q["index"]] = np.inf
        assert q["nearest"] == list(np.argsort(row)[:3])
    assert (tmp_path / "retrieval_nearest.png").exists() and (tmp_path / "retrieval_farthest.png").exists()


def test_anomaly_compares_runs(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_anomaly([run, "random:small_cnn"], tmp_path, str(root), cfg=EvalConfig(anomaly_k=2), **QUIET)
    assert [r["name"] for r in out["runs"]] == ["tiny", "random small_cnn"]
    enc = load_source(run)
    train = representations(enc, "train", data_dir=str(root)).features
    test = np.concatenate([representations(enc, "test", data_dir=str(root)).features,
                           representations(enc, "test", "mnist", str(root)).features])
    expect = np.sort(_dist(test, train), 1)[:, :2].mean(1)
    scores = np.load(tmp_path / "scores-tiny.npy")
    np.testing.assert_allclose(scores, expect, rtol=1e-4)
    truth = np.r_[np.zeros(20), np.ones(12)]
    assert out["runs"][0]["auroc"] == pytest.approx(roc_auc_score(truth, expect))
    rows = list(csv.DictReader(open(tmp_path / "scores-tiny.csv")))
    assert len(rows) == 32 and rows[20]["dataset"] == "mnist" and rows[20]["index"] == "0"
    top = out["runs"][0]["top"]
    assert len(top) == 7 and top[0]["score"] == pytest.approx(expect.max(), rel=1e-5)
    for name in ("roc.png", "top_anomalies.png", "anomaly.json", "scores-random_small_cnn.npy"):
        assert (tmp_path / name).exists()


def test_cluster_silhouette_vs_sklearn(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_cluster(run, tmp_path, str(root), cfg=EvalConfig(clusters=4), **QUIET)
    x = representations(load_source(run), "train", data_dir=str(root)).features
    from viclab.eval.cluster import kmeans

    assign, _ = kmeans(x, 4, 0)
    assert out["silhouette"] == pytest.approx(silhouette_score(x, assign), abs=1e-5)
    assert sum(out["cluster_sizes"]) == 100 and (tmp_path / "clusters.png").exists()


def test_anomaly_writes_only_to_the_first_runs_folder(tiny_run, tmp_path, monkeypatch):
    run, root = tiny_run
    monkeypatch.chdir(tmp_path)
    run_anomaly([run, "random:small_cnn"], None, str(root), **QUIET)
    assert (run / "eval" / "roc.png").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "cache"]  # no ./eval-random-small_cnn left behind
