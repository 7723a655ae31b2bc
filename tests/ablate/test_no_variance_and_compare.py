"""mu = 0 (spec S4) through the CLI, and the comparison table across kinds of runs, vs independent references."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, silhouette_score

from viclab.ablate.latent import run_latent
from viclab.cli import main
from viclab.config import LatentConfig
from viclab.core.context import QUIET
from viclab.eval.cluster import kmeans
from viclab.represent.encode import load_source, representations

SMALL = ["model.projector=32-32", "train.batch_size=20", "train.epochs=1", "train.min_steps=0"]  # one exact epoch


def test_no_variance_trains_with_mu_zero_and_evaluates(tiny_run, tmp_path, capsys):
    _, root = tiny_run
    argv = ["ablate", "no-variance", "--preset", "cpu", "--data-dir", str(root), "--out", str(tmp_path),
            "--name", "nv", "--no-progress", *SMALL, "loss.var_weight=25"]  # the ablation's mu = 0 wins
    assert main(argv) == 0
    run = tmp_path / "nv"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["split"] == "train"]
    assert len(train) == 100 // 20  # one epoch of the fixture's 100 images in batches of 20, each step logged
    for r in train:
        # The logged total is lambda * inv + mu * var + nu * cov with lambda = 25, nu = 1 (spec §1): it matches
        # mu = 0 and, since the variance term is far from 0, cannot match the mu = 25 the command line also asked for.
        tol = 1e-4 * max(1.0, r["loss"])
        assert abs(r["loss"] - (25 * r["invariance"] + r["covariance"])) < tol
        assert 25 * r["variance"] > 100 * tol
    assert main(["probe", str(run), "--data-dir", str(root), "--no-progress"]) == 0
    assert json.loads((run / "eval" / "probe.json").read_text())["n_train"] == 100
    assert main(["plot", str(run), "--data-dir", str(root), "--no-progress"]) == 0
    assert (run / "eval" / "pca.png").stat().st_size > 0


def _knn_top1_bounds(train_x, train_y, test_x, test_y, k: int = 20, temperature: float = 0.07) -> tuple[float, float]:
    """Brute-force weighted kNN top-1 (cosine, ``k`` nearest vote ``exp(cos / T)``); ``(low, high)`` over ties."""
    tr = train_x.astype(np.float64) / np.linalg.norm(train_x, axis=1, keepdims=True)
    te = test_x.astype(np.float64) / np.linalg.norm(test_x, axis=1, keepdims=True)
    votes = np.zeros((len(te), 10))
    for i, q in enumerate(te):
        sims = tr @ q
        for j in np.argsort(-sims, kind="stable")[:k]:
            votes[i, train_y[j]] += np.exp(sims[j] / temperature)
    own = votes[np.arange(len(te)), test_y]
    above, level = (votes > own[:, None]).sum(1), (votes == own[:, None]).sum(1)
    return float((above + level <= 1).mean()), float((above < 1).mean())


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _noise_folder(path: Path) -> Path:
    """16 anomaly PNGs: 8 of the fixture's uniform noise, 8 of lower-contrast noise, so the AUROC is neither 0.5
    nor 1 (MNIST digits are so unlike noise that every score separates them: AUROC 1 whatever k is)."""
    from PIL import Image

    path.mkdir()
    rng = np.random.default_rng(1)
    for i in range(16):
        lo, hi = (0, 256) if i % 2 else (48, 208)
        Image.fromarray(rng.integers(lo, hi, (32, 32, 3), dtype=np.uint8)).save(path / f"{i:02d}.png")
    return path


def test_compare_rows_for_an_encoder_and_latent_codes(tiny_run, tmp_path, capsys):
    src, root = tiny_run
    run_latent(LatentConfig(pairs="naive", data_dir=str(root), dim=8, projector="16-16", batch_size=20, epochs=1),
               tmp_path / "lat", ctx=QUIET)
    odd_dir = _noise_folder(tmp_path / "odd")
    assert main(["compare", str(src), str(tmp_path / "lat"), "--names", "vicreg", "latent", "--data-dir", str(root),
                 "--anomalies", str(odd_dir), "--out", str(tmp_path / "cmp"), "--no-progress"]) == 0
    payload = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    rows = {r["name"]: r for r in payload["runs"]}

    # the encoder: every number from its representations, by brute force and sklearn
    enc = load_source(src)
    here = QUIET.reading(str(root))
    tr, te = representations(enc, "train", ctx=here), representations(enc, "test", ctx=here)
    odd = representations(enc, "test", str(odd_dir), str(root))
    v = rows["vicreg"]
    assert (v["n_train"], v["n_test"]) == (100, 20)
    lo, hi = _knn_top1_bounds(tr.features, tr.labels, te.features, te.labels)
    assert lo - 1e-6 <= v["knn_top1"] <= hi + 1e-6
    test_x = np.concatenate([te.features, odd.features]).astype(np.float64)
    d = np.sqrt(((test_x[:, None] - tr.features.astype(np.float64)[None]) ** 2).sum(-1))
    scores = np.sort(d, 1)[:, :2].mean(1)  # mean L2 distance to the 2 nearest training representations
    assert v["auroc"] == pytest.approx(roc_auc_score(np.r_[np.zeros(20), np.ones(16)], scores))
    assert v["silhouette"] == pytest.approx(silhouette_score(tr.features, kmeans(tr.features, 10, 0)[0]), abs=1e-5)

    # the latent codes: a probe on 90% of the 100 codes (spec S5), tested on the other 10; no anomaly score
    lat = load_source(tmp_path / "lat")
    ctr, cte = representations(lat, "train"), representations(lat, "test")
    assert (len(ctr.labels), len(cte.labels)) == (90, 10)
    r = rows["latent"]
    assert (r["n_train"], r["n_test"]) == (90, 10)
    assert r["auroc"] is None and "no encoder" in r["auroc_unavailable"]
    lo, hi = _knn_top1_bounds(ctr.features, ctr.labels, cte.features, cte.labels)
    assert lo - 1e-6 <= r["knn_top1"] <= hi + 1e-6
    assert r["silhouette"] == pytest.approx(silhouette_score(ctr.features, kmeans(ctr.features, 10, 0)[0]), abs=1e-5)

    # the Markdown table shows those numbers: accuracies in %, AUROC and silhouette to 3 decimals
    table = (tmp_path / "cmp" / "compare.md").read_text().splitlines()
    assert table[:2] == [f"| run | probe data (train / test) | linear top-1 | kNN top-1 | AUROC vs {odd_dir} | "
                         "silhouette |", "| --- | --- | --- | --- | --- | --- |"]
    assert len(table) == 4
    assert table[2] == (f"| vicreg | 100 / 20 | {_pct(v['linear_top1'])} | {_pct(v['knn_top1'])} | {v['auroc']:.3f} | "
                        f"{v['silhouette']:.3f} |")
    assert table[3] == (f"| latent | 90 / 10 held-out codes | {_pct(r['linear_top1'])} | {_pct(r['knn_top1'])} | n/a | "
                        f"{r['silhouette']:.3f} |")
