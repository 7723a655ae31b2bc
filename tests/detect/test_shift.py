"""The shift-aware objective and the shift detector (issue 27): rotations as distinct samples, the rotation head's
loss against its equation, planted upside-down anomalies, mean-shifted kNN against sklearn, and the bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors

from viclab.cli import main
from viclab.config import resolve
from viclab.core.context import QUIET
from viclab.core.errors import ViclabError
from viclab.core.runtime import select_runtime
from viclab.data import ImageData
from viclab.detect import fit_detector, load_detector, load_test
from viclab.detect.detectors import KnnDetector
from viclab.engine.vicreg import check_shift, rotate
from viclab.losses import ShiftVICRegLoss, VICRegLoss

SMALL = ["model.projector=64-64", "train.batch_size=64", "data.size=16", "detect.batch_size=200",
         "detect.precision=fp32", "optim.lr=3e-3", "optim.warmup_epochs=0"]


def _oriented(rng: np.random.Generator, side: int) -> np.ndarray:
    """A 'normal' image with an up and a down: a random colour, bright at the top and dark at the bottom."""
    ramp = np.linspace(1.4, 0.2, side)[:, None, None]
    x = rng.integers(60, 180, 3)[None, None] * ramp + rng.normal(0, 8, (side, side, 3))
    return np.clip(x, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def upside_down(tmp_path_factory):
    """normal/: 240 oriented images; abnormal/: 40 more, upside down."""
    root = tmp_path_factory.mktemp("oriented")
    rng = np.random.default_rng(0)
    for name, n in (("normal", 240), ("abnormal", 40)):
        (root / name).mkdir()
        for i in range(n):
            x = _oriented(rng, 16)
            Image.fromarray(x[::-1] if name == "abnormal" else x).save(root / name / f"{i}.png")
    return root


def test_rotate_turns_each_row_as_numpy(seed=0):
    x = torch.randint(0, 256, (6, 3, 5, 5), dtype=torch.uint8)
    shifts = torch.tensor([0, 1, 2, 3, 1, 0])
    out = rotate(x, shifts).numpy()
    for i, r in enumerate(shifts.tolist()):
        np.testing.assert_array_equal(out[i], np.rot90(x[i].numpy(), r, axes=(1, 2)))


def test_shift_loss_is_vicreg_plus_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    l1, l2 = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    s = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    terms = ShiftVICRegLoss(VICRegLoss(), 7.0)(z1, z2, l1, l2, s)

    def ce(logits):  # -log softmax at the shift applied, by hand in float64
        a = logits.double().numpy()
        logp = a - a.max(1, keepdims=True) - np.log(np.exp(a - a.max(1, keepdims=True)).sum(1, keepdims=True))
        return -logp[np.arange(8), s.numpy()].mean()

    want_ce = (ce(l1) + ce(l2)) / 2
    assert terms.shift.item() == pytest.approx(want_ce, rel=1e-5)
    assert terms.loss.item() == pytest.approx(VICRegLoss()(z1, z2).loss.item() + 7.0 * want_ce, rel=1e-5)


def test_mean_shifted_knn_is_cosine_knn_around_the_normal_mean():
    rng = np.random.default_rng(0)
    normal, queries = rng.normal(1, 1, (50, 6)), rng.normal(1, 1.5, (9, 6))
    cfg = resolve("detect", overrides=["detect.k=3", "detect.mean_shift=true"])
    det = KnnDetector(cfg, None, select_runtime("cpu", "fp32"))
    det.fit_features(torch.from_numpy(normal.astype(np.float32)))
    got = det.score_features(queries.astype(np.float32))["score"]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)
    centre = unit(normal).mean(0)
    nn = NearestNeighbors(n_neighbors=3, metric="cosine").fit(unit(normal) - centre)
    d, _ = nn.kneighbors(unit(queries) - centre)
    np.testing.assert_allclose(got, np.sqrt(2 * d).mean(1), rtol=1e-4)


def test_shift_detector_finds_upside_down_images_and_reloads(upside_down, tmp_path):
    cfg = resolve("detect", overrides=[f"data.normal={upside_down / 'normal'}",
                                       f"data.abnormal={upside_down / 'abnormal'}", "detect.detector=shift",
                                       "train.epochs=4", *SMALL])
    torch.manual_seed(0)
    fit_detector(cfg, tmp_path / "shift", ctx=QUIET)
    det, _ = load_detector(tmp_path / "shift")
    assert det.recipe.train.objective == "shift" and det.network.shift_head.out_features == 4
    test = load_test(cfg.data)
    s = det.score(test.data.images)
    assert s.keys() == {"score", "mahalanobis", "rotation"}
    assert roc_auc_score(test.labels, s["rotation"]) > 0.9
    assert roc_auc_score(test.labels, s["score"]) > 0.9
    again, _ = load_detector(tmp_path / "shift")
    assert all(np.array_equal(s[k], again.score(test.data.images)[k]) for k in s)


def test_shift_objective_refuses_what_it_cannot_rotate():
    cfg = resolve("train", overrides=["train.objective=shift"])
    wide = ImageData(torch.zeros(4, 3, 16, 24, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ("a",))
    with pytest.raises(ViclabError, match="needs square images; these are 16x24"):
        check_shift(cfg, wide)
    clips = ImageData(torch.zeros(4, 1, 16, 24), torch.zeros(4, dtype=torch.long), ("a",), modality="spectrogram")
    with pytest.raises(ViclabError, match="for sounds use the machine_id detector"):
        check_shift(cfg, clips)
    with pytest.raises(ViclabError, match="augment.local_crops=0"):
        check_shift(resolve("train", overrides=["train.objective=shift", "augment.local_crops=2"]),
                    ImageData(torch.zeros(4, 3, 16, 16, dtype=torch.uint8), torch.zeros(4, dtype=torch.long), ("a",)))


def test_shift_detector_on_a_plain_vicreg_run_is_one_error_line(upside_down, tmp_path, capsys):
    common = ["--normal", str(upside_down / "normal"), "--no-progress", "train.epochs=1", *SMALL]
    assert main(["detect", "fit", "--detector", "knn", "--out", str(tmp_path / "k"), *common]) == 0
    assert main(["detect", "fit", "--detector", "shift", "--encoder", str(tmp_path / "k" / "train"),
                 "--out", str(tmp_path / "s"), *common]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("viclab: error: ") and "trained without a shift objective" in err[-1]
    assert not (tmp_path / "s").exists()  # refused before anything was written


def test_the_shift_detector_trains_the_rotation_recipe_unless_told_otherwise():
    from viclab.detect import fit_config

    assert fit_config(overrides=["detect.detector=shift"]).recipe.train.objective == "rotation"
    assert fit_config("cpu", overrides=["detect.detector=shift"]).recipe.train.objective == "vicreg"  # -> shift
    assert fit_config(overrides=["detect.detector=knn"]).recipe.train.objective == "vicreg"
