"""Numbers an evaluation prints are not trivial, not overwritten, and come with their sampling error
(issue 24: one-class probes, top-5 of few classes, tiny test sets, eval folders of same-named
datasets, val/ for the probe's selection, binomial intervals, torch labels in the kNN)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import binomtest

from viclab.core.context import QUIET, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.eval.probe import knn_accuracy, linear_probe
from viclab.eval.tasks import run_probe, run_retrieve

HUES = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def _folder(root: Path, split: str, per_class: int, seed: int, classes=tuple(HUES)) -> Path:
    """``root/split/<class>/*.png``: noisy 12-px images of one hue per class."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(np.array(HUES[c]) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / split / c / f"{i}.png")
    return root


def _blobs(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    return (rng.normal(size=(n, 8)) + 3 * np.eye(classes, 8)[y]).astype(np.float32), y


@pytest.mark.parametrize("k,n", [(0, 5), (1, 7), (36, 36), (17, 36), (688, 1000), (9999, 10000)])
def test_binomial_interval_is_scipys_wilson_interval(k, n):
    from viclab.core.metrics import binomial_interval

    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert binomial_interval(k / n, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_knn_accuracy_takes_torch_labels():
    x, y = _blobs(60, 3, 0)
    xt, yt = _blobs(30, 3, 1)
    got = knn_accuracy(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xt), torch.from_numpy(yt), k=5,
                       temperature=0.1)
    # a loop reference: the 5 most cosine-similar training points vote exp(cos / 0.1) for their class
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    hits = []
    for q, t in zip(xt, yt):
        cos = unit @ (q / np.linalg.norm(q))
        near = np.argsort(-cos)[:5]
        hits.append(np.bincount(y[near], weights=np.exp(cos[near] / 0.1), minlength=3).argmax() == t)
    assert got[1] == pytest.approx(np.mean(hits)) and got[5] is None


@pytest.mark.parametrize("classes,has_top5", [(2, False), (5, False), (6, True)])
def test_top5_only_above_five_classes(classes, has_top5):
    x, y = _blobs(120, classes, 0)
    xt, yt = _blobs(60, classes, 1)
    probe = linear_probe(x, y, xt, yt, weight_decays=(1e-4,))
    knn = knn_accuracy(x, y, xt, yt, k=5)
    assert (probe.top5 is not None) == has_top5 and (knn[5] is not None) == has_top5
    assert 0 <= probe.top1 <= 1 and 0 <= knn[1] <= 1


def test_weight_decay_is_chosen_on_the_given_validation_set():
    x, y = _blobs(100, 3, 0)
    xt, yt = _blobs(30, 3, 1)
    xv, yv = _blobs(7, 3, 2)  # a held-out tenth of 100 would be 10 images: accuracies in tenths
    probe = linear_probe(x, y, xt, yt, weight_decays=(1e-4, 1e-2, 1.0), val_x=xv, val_y=yv)
    assert len(probe.val_top1) == 3
    assert all(round(acc * 7) == pytest.approx(acc * 7, abs=1e-6) for acc in probe.val_top1.values())
    assert probe.weight_decay == max(probe.val_top1, key=lambda wd: (probe.val_top1[wd], -wd))  # ties are rare here


def test_one_class_probe_and_retrieval_are_refused(tiny_run, tmp_path):
    run, data = tiny_run
    one = _folder(_folder(tmp_path / "one", "train", 12, 0, ("red",)), "test", 4, 1, ("red",))
    with pytest.raises(ViclabError, match="1 class .red. in its train images.*at least two classes"):
        run_probe(run, out=tmp_path / "p", data_dir=str(data), dataset=str(one), ctx=QUIET)
    with pytest.raises(ViclabError, match="at least two classes"):
        run_retrieve(run, out=tmp_path / "r", data_dir=str(data), dataset=str(one), ctx=QUIET)
    assert not (tmp_path / "p").exists() and not (tmp_path / "r").exists()


def test_probe_reports_intervals_warns_on_a_tiny_test_set_and_selects_on_val(tiny_run, tmp_path):
    run, data = tiny_run
    photos = tmp_path / "photos"
    for split, n, seed in (("train", 10, 0), ("val", 3, 1), ("test", 4, 2)):
        _folder(photos, split, n, seed)
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run_probe(run, out=tmp_path / "p", data_dir=str(data), dataset=str(photos),
                        ctx=Context(progress=False, echo=lines.append))
    assert any(issubclass(w.category, ViclabWarning) and "only 12 test images" in str(w.message) for w in caught)
    saved = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert saved == json.loads(json.dumps(out))
    lin, knn = saved["linear"], saved["knn"]
    assert saved["n_test"] == 12 and saved["image_size"] == 32  # decoded at the encoder's 32 px
    assert lin["selection"] == "val" and lin["n_val"] == 9  # val/ (3 classes x 3), not a tenth of train/
    assert all(round(a * 9) == pytest.approx(a * 9, abs=1e-6) for a in lin["val_top1"].values())
    for acc in (lin, knn):
        ci = binomtest(round(acc["top1"] * 12), 12).proportion_ci(method="wilson")
        assert acc["top1_interval"] == pytest.approx([ci.low, ci.high])
        assert acc["top5"] is None and acc["top5_interval"] is None  # three classes: top-5 says nothing
        assert f"[{100 * ci.low:.2f}, {100 * ci.high:.2f}]" in lines[0]
    assert "top-5" not in lines[0]


def test_same_named_datasets_get_their_own_eval_folders(tiny_run, tmp_path):
    run, data = tiny_run
    firsts = []
    for parent, seed in (("a", 0), ("b", 5)):
        photos = tmp_path / parent / "photos"
        _folder(_folder(photos, "train", 7, seed), "test", 2, seed + 1)
        run_probe(run, data_dir=str(data), dataset=str(photos), ctx=QUIET)
        firsts.append(sorted(run.glob("eval-photos*/probe.json")))
    folders = firsts[-1]
    assert len(folders) == 2, folders  # one each: the first was not overwritten by the second
    assert {json.loads(f.read_text())["dataset"] for f in folders} == {str(tmp_path / p / "photos") for p in "ab"}
