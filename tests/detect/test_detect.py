"""Detectors end to end: folder data of mixed sizes and modes, save and reload, planted anomalies,
the stream monitor against spec §1's equations, and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score

from tests.detect.test_scores import _spec_covariance, _spec_variance
from viclab.cli import main
from viclab.config import resolve
from viclab.core.context import QUIET
from viclab.core.errors import ViclabError
from viclab.core.metrics import threshold_at_fpr
from viclab.detect import fit_detector, load_detector, load_normal, load_test, run_monitor, run_score
from viclab.views import Augment

# A tiny VICReg recipe: the tests check behaviour, not quality.
TINY = ["model.projector=32-32", "train.batch_size=16", "train.epochs=1", "data.size=16", "detect.batch_size=64",
        "detect.views=3", "detect.precision=fp32"]


def _smooth(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth 'normal' image: a random 3x3 colour grid upsampled bicubically."""
    grid = Image.fromarray(rng.integers(40, 216, (3, 3, 3), dtype=np.uint8))
    return np.asarray(grid.resize((side, side), Image.Resampling.BICUBIC))


def _patched(rng: np.random.Generator, side: int) -> np.ndarray:
    """A normal image with a pasted square of noise: the planted anomaly."""
    x = _smooth(rng, side).copy()
    p = side // 3
    r, c = rng.integers(0, side - p, 2)
    x[r:r + p, c:c + p] = rng.integers(0, 256, (p, p, 3))
    return x


def _save(array: np.ndarray, path: Path, mode: str) -> None:
    im = Image.fromarray(array)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = im.convert("RGBA")
    elif mode == "P":
        im = im.convert("P")
    elif mode == "I;16":
        im = Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257)  # 16-bit greyscale
    im.save(path)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """normal/ (60 images of mixed sizes, modes and formats) and abnormal/{crack,stain}/ (20 patched)."""
    root = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    (root / "normal").mkdir()
    modes = ["RGB", "L", "RGBA", "P", "I;16"]
    for i in range(60):
        side = int(rng.choice([16, 24, 40]))
        ext = ".jpg" if i % 7 == 0 else ".png"
        mode = "RGB" if ext == ".jpg" else modes[i % len(modes)]
        _save(_smooth(rng, side), root / "normal" / f"n{i:02d}{ext}", mode)
    for kind in ("crack", "stain"):
        (root / "abnormal" / kind).mkdir(parents=True)
        for i in range(10):
            _save(_patched(rng, 16 + 8 * (i % 2)), root / "abnormal" / kind / f"{kind}{i}.png", "RGB")
    return root


def _cfg(folders: Path, *extra: str):
    return resolve("detect", overrides=[f"data.normal={folders / 'normal'}", f"data.abnormal={folders / 'abnormal'}",
                                        *TINY, *extra])


def test_folder_split_is_seeded_disjoint_and_reads_every_mode(folders):
    cfg = _cfg(folders).data
    fit, holdout = load_normal(cfg)
    test = load_test(cfg)
    n_test_normal = int((test.labels == 0).sum())
    assert n_test_normal == 12 and len(fit) + len(holdout) == 48 and len(holdout) == 5  # 20% of 60, 10% of 48
    assert (test.labels == 1).sum() == 20 and {o for o in test.origin if o != "normal"} == {"abnormal:crack",
                                                                                             "abnormal:stain"}
    assert fit.images.shape[1:] == (3, 16, 16) and test.data.images.dtype == torch.uint8
    every = torch.cat([fit.images, holdout.images, test.data.images[:n_test_normal]]).flatten(1)
    assert len({tuple(r.tolist()) for r in every}) == 60  # the three parts are disjoint and cover the folder
    again, _ = load_normal(cfg)
    assert torch.equal(again.images, fit.images)  # seeded


def test_cli_fit_and_score_on_folders(folders, tmp_path, capsys):
    det = tmp_path / "knn"
    argv = ["detect", "fit", "--detector", "knn", "--encoder", "random:small_cnn", "--normal", str(folders / "normal"),
            "--abnormal", str(folders / "abnormal"), "-k", "3", "--out", str(det), "--no-progress", *TINY]
    assert main(argv) == 0
    out = tmp_path / "score"
    assert main(["detect", "score", str(det), "--out", str(out), "--top", "5", "--no-progress"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == 32 and {r["origin"] for r in rows} == {"normal", "abnormal:crack", "abnormal:stain"}
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["knn:score"]) for r in rows])
    metrics = json.loads((out / "metrics.json").read_text())["detectors"]["knn"]
    assert metrics["auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-6)
    summary = json.loads((det / "detector.json").read_text())
    flagged = np.array([int(r["knn:flagged"]) for r in rows])
    np.testing.assert_array_equal(flagged, (scores > summary["threshold"]).astype(int))
    for name in ("roc_pr.png", "top_anomalies.png", "hist-knn.png"):
        assert (out / name).stat().st_size > 1000
    # a threshold at another false-positive rate, calibrated on the held-out normal images' scores now
    assert main(["detect", "score", str(det), "--out", str(tmp_path / "s2"), "--fpr", "0.4", "--no-progress"]) == 0
    _, holdout = load_normal(resolve("detect", overrides=[f"data.normal={folders / 'normal'}", *TINY]).data)
    d, _ = load_detector(det)
    t = threshold_at_fpr(d.score(holdout.images)["score"], 0.4)
    again = json.loads((tmp_path / "s2" / "metrics.json").read_text())["detectors"]["knn"]
    assert again["threshold"] == t and again["threshold_fpr"] == 0.4 and t < summary["threshold"]
    # fitting again in the same folder with the same inputs is a no-op
    assert main(argv) == 0 and "already fitted" in capsys.readouterr().out


@pytest.mark.parametrize("detector", ["knn", "mahalanobis", "vicreg_terms", "autoencoder"])
def test_saved_and_reloaded_detector_scores_identically(folders, tmp_path, detector):
    cfg = _cfg(folders, f"detect.detector={detector}", "autoencoder.epochs=2", "detect.shrinkage=0.2")
    summary = fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    a, _ = load_detector(tmp_path / "d")
    b, _ = load_detector(tmp_path / "d")
    test = load_test(cfg.data)
    sa, sb = a.score(test.data.images), b.score(test.data.images)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)
    # the threshold was computed before saving, from the in-memory detector: the reloaded one reproduces it
    _, holdout = load_normal(cfg.data)
    assert threshold_at_fpr(a.score(holdout.images)["score"], cfg.fpr) == summary["threshold"]
    if detector == "vicreg_terms":
        assert {"invariance", "variance", "covariance", "loss"} <= sa.keys()
        assert np.array_equal(sa["score"], sa["invariance"])


def test_autoencoder_scores_planted_patches_above_clean_images(tmp_path):
    rng = np.random.default_rng(1)
    for name, make, n in (("normal", _smooth, 300), ("abnormal", _patched, 40)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.fromarray(make(rng, 16)).save(tmp_path / name / f"{i}.png")
    torch.manual_seed(0)
    cfg = resolve("detect", overrides=[f"data.normal={tmp_path / 'normal'}", f"data.abnormal={tmp_path / 'abnormal'}",
                                       "data.size=16", "detect.detector=autoencoder", "autoencoder.epochs=40",
                                       "autoencoder.batch_size=32", "autoencoder.lr=3e-3", "detect.precision=fp32"])
    fit_detector(cfg, tmp_path / "ae", ctx=QUIET)
    det, _ = load_detector(tmp_path / "ae")
    test = load_test(cfg.data)
    scores = det.score(test.data.images)["score"]
    normal, bad = scores[test.labels == 0], scores[test.labels == 1]
    pairs = (bad[:, None] > normal[None]).mean() + 0.5 * (bad[:, None] == normal[None]).mean()
    assert pairs > 0.9, pairs


def test_monitor_terms_follow_the_equations(folders, tmp_path):
    cfg = _cfg(folders, "detect.detector=vicreg_terms")
    fit_detector(cfg, tmp_path / "vt", ctx=QUIET)
    result = run_monitor(tmp_path / "vt", tmp_path / "mon", stream="normal:2,anomalous:1", batch_size=6, seed=3,
                         ctx=QUIET)
    assert result["anomalous"] == [False, False, True]
    with pytest.raises(ViclabError, match="holds 20 anomalous images, fewer than one batch of 21"):
        run_monitor(tmp_path / "vt", tmp_path / "mon2", stream="anomalous:1", batch_size=21, ctx=QUIET)
    assert (tmp_path / "mon" / "monitor.png").stat().st_size > 1000 and any((tmp_path / "mon" / "tb").iterdir())
    # Rebuild the same batches and views, then the terms by spec §1's equations, entry by entry.
    det, _ = load_detector(tmp_path / "vt")
    test = load_test(cfg.data)
    rng = np.random.default_rng(3)
    pools = {False: np.flatnonzero(test.labels == 0), True: np.flatnonzero(test.labels == 1)}
    queues = {k: rng.permutation(p) for k, p in pools.items()}
    gen = torch.Generator().manual_seed(3)
    for t, anomalous in enumerate(result["anomalous"]):
        idx, queues[anomalous] = queues[anomalous][:6], queues[anomalous][6:]
        v1, v2 = Augment(det.augment).pair(test.data.images[torch.from_numpy(idx)], gen)
        with torch.no_grad():
            z1, z2 = det.network(v1).double().numpy(), det.network(v2).double().numpy()
        inv = np.mean([np.mean((z1[i] - z2[i]) ** 2) for i in range(6)])
        var = _spec_variance(z1, 1.0, 1e-4) + _spec_variance(z2, 1.0, 1e-4)
        cov = _spec_covariance(z1) + _spec_covariance(z2)
        assert result["terms"]["invariance"][t] == pytest.approx(inv, rel=1e-4)
        assert result["terms"]["variance"][t] == pytest.approx(var, rel=1e-4, abs=1e-6)
        assert result["terms"]["covariance"][t] == pytest.approx(cov, rel=1e-4)


def test_registered_dataset_normal_classes(fake_cifar_root):
    cfg = resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}", "data.normal_classes=cat,5",
                                       "data.holdout=0"]).data
    fit, holdout = load_normal(cfg)
    assert set(fit.labels.tolist()) == {3, 5} and len(holdout) == 0
    test = load_test(cfg)
    from viclab.data import load_dataset

    truth = np.isin(load_dataset("cifar10", "test", fake_cifar_root).labels.numpy(), [3, 5])
    np.testing.assert_array_equal(test.labels, (~truth).astype(int))
    vehicles = load_test(resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}", "data.normal_classes=3,5",
                                                      "data.anomaly_classes=airplane,1,ship,truck"]).data)
    keep = np.isin(load_dataset("cifar10", "test", fake_cifar_root).labels.numpy(), [3, 5, 0, 1, 8, 9])
    np.testing.assert_array_equal(vehicles.labels, (~truth[keep]).astype(int))
    with pytest.raises(ViclabError, match="normal class 'kangaroo' is not a class of cifar10"):
        load_normal(resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}",
                                                 "data.normal_classes=kangaroo"]).data)


def test_refuses_a_folder_of_another_detector(folders, tmp_path):
    fit_detector(_cfg(folders, "detect.encoder=random:small_cnn"), tmp_path / "d", ctx=QUIET)
    with pytest.raises(ViclabError, match="holds a detector of another config"):
        fit_detector(_cfg(folders, "detect.encoder=random:small_cnn", "detect.k=3"), tmp_path / "d", ctx=QUIET)


def test_a_changed_normal_folder_is_refused_at_scoring(folders, tmp_path):
    """Adding an image reshuffles the seeded split: fitted images would leak into the normal test set."""
    import shutil

    shutil.copytree(folders, tmp_path / "f")
    cfg = _cfg(tmp_path / "f", "detect.encoder=random:small_cnn")
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    Image.fromarray(_smooth(np.random.default_rng(9), 16)).save(tmp_path / "f" / "normal" / "new.png")
    with pytest.raises(ViclabError, match="changed since it was fitted"):
        run_score([tmp_path / "d"], tmp_path / "s", ctx=QUIET)


def test_a_fit_that_failed_before_training_can_be_fixed_in_place(folders, tmp_path):
    with pytest.raises(ViclabError, match="train.batch_size=100 is larger than the 43 normal images"):
        fit_detector(_cfg(folders, "detect.detector=vicreg_terms", "train.batch_size=100"), tmp_path / "d",
                     ctx=QUIET)
    assert not (tmp_path / "d").exists()
    fit_detector(_cfg(folders, "detect.detector=vicreg_terms"), tmp_path / "d", ctx=QUIET)
    assert (tmp_path / "d" / "detector.json").exists()
