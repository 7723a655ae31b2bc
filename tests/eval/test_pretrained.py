"""Published checkpoints as encoders: VICReg's ResNet-50 layout and a DINO ViT, evaluated on a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tests.eval.test_folders_and_transfer import _photos
from viclab.cli import main
from viclab.core.context import QUIET
from viclab.core.errors import ViclabError
from viclab.models import ResNet50, VisionTransformer
from viclab.represent.encode import load_source, representations

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's, as published


def _reference(module: torch.nn.Module, files, size: int) -> np.ndarray:
    """The checkpoint's representations computed here: Pillow's bicubic resize, ImageNet normalisation."""
    x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                  for f in files]).astype(np.float32) / 255
    x = torch.from_numpy(((x - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        return module.eval()(x).numpy()


def test_vicreg_resnet50_checkpoint_probed_on_a_folder(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = ResNet50()
    for m in net.modules():  # BatchNorm statistics away from the identity, as in a trained network
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    # facebookresearch/vicreg saves the backbone's state dict alone (torchvision's names, no fc)
    torch.save(net.state_dict(), tmp_path / "resnet50.pth")
    photos = tmp_path / "photos"
    _photos(photos, "train", 2, 0)
    _photos(photos, "test", 1, 1)
    source = load_source(f"pretrained:resnet50:{tmp_path / 'resnet50.pth'}")
    assert source.dim == 2048 and source.config.augment.size == 224
    reps = representations(source, "test", str(photos))
    files = sorted((photos / "test").rglob("*.png"), key=lambda f: (f.parent.name, f.name))
    np.testing.assert_allclose(reps.features, _reference(net, files, 224), rtol=1e-4, atol=1e-4)
    monkeypatch.chdir(tmp_path)
    assert main(["probe", f"pretrained:resnet50:{tmp_path / 'resnet50.pth'}", "--dataset", str(photos),
                 "--knn-k", "3", "--no-progress", "--out", "p"]) == 0
    probe = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert probe["backbone"] == "resnet50" and probe["n_train"] == 6 and probe["n_test"] == 3


def test_dino_vit_checkpoint_keeps_its_patch_and_image_size(tmp_path):
    torch.manual_seed(0)
    dino = VisionTransformer(img_size=64, patch_size=16, embed_dim=384, depth=2, num_heads=6)  # small DINO-like
    torch.save({"teacher": {f"backbone.{k}": v for k, v in dino.state_dict().items()}}, tmp_path / "dino.pth")
    source = load_source(f"pretrained:vit_small:{tmp_path / 'dino.pth'}")
    assert source.config.augment.size == 64 and source.module.patch_embed.patch_size == 16
    photos = tmp_path / "photos"
    _photos(photos, "train", 1, 0)
    _photos(photos, "test", 1, 1)
    reps = representations(source, "test", str(photos))
    files = sorted((photos / "test").rglob("*.png"), key=lambda f: (f.parent.name, f.name))
    np.testing.assert_allclose(reps.features, _reference(dino, files, 64), rtol=1e-4, atol=1e-4)


def test_bad_pretrained_sources(tmp_path):
    with pytest.raises(ViclabError, match="give pretrained:BACKBONE:FILE"):
        load_source("pretrained:resnet50")
    with pytest.raises(ViclabError, match="does not exist"):
        load_source(f"pretrained:resnet50:{tmp_path / 'none.pth'}")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ViclabError, match="cannot read checkpoint"):
        load_source(f"pretrained:resnet50:{tmp_path / 'junk.pth'}")
    # torchvision's early checkpoints predate BatchNorm's num_batches_tracked: they load all the same
    old = {k: v for k, v in ResNet50().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "old.pth")
    assert load_source(f"pretrained:resnet50:{tmp_path / 'old.pth'}").dim == 2048
    torch.save(ResNet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(ViclabError, match="checkpoint does not fit VisionTransformer|not a ViT"):
        load_source(f"pretrained:vit_small:{tmp_path / 'r50.pth'}")
    from viclab.eval.tasks import run_probe

    with pytest.raises(ViclabError, match="trained on ImageNet.*--dataset"):
        run_probe(f"pretrained:resnet50:{tmp_path / 'r50.pth'}", out=tmp_path / "o", ctx=QUIET)


@pytest.mark.parametrize("detector, layers", [("mahalanobis", "all")])  # knn reads the same features
def test_a_published_resnet50_is_a_detectors_backbone_at_its_own_size(tmp_path, detector, layers):
    from viclab.config import resolve
    from viclab.detect import fit_detector, load_detector, load_test

    torch.manual_seed(0)
    torch.save(ResNet50().state_dict(), tmp_path / "resnet50.pth")  # facebookresearch/vicreg's layout
    _photos(tmp_path / "normal", "x", 4, 0)
    _photos(tmp_path / "abnormal", "y", 1, 1)
    cfg = resolve("detect", overrides=[f"data.normal={tmp_path / 'normal' / 'x' / 'red'}",
                                       f"data.abnormal={tmp_path / 'abnormal' / 'y'}", "data.holdout=0",
                                       f"detect.detector={detector}", f"detect.layers={layers}", "detect.k=1",
                                       "detect.shrinkage=0.5", f"detect.encoder=pretrained:resnet50:"
                                       f"{tmp_path / 'resnet50.pth'}", "detect.precision=fp32"])
    assert cfg.data.size == 32  # the detector's default: the checkpoint's own 224 replaces it
    fit_detector(cfg, tmp_path / "d", ctx=QUIET)
    det, _ = load_detector(tmp_path / "d")
    assert det.cfg.data.size == 224 and det.augment.mean == (0.485, 0.456, 0.406)
    test = load_test(det.cfg.data)
    assert test.data.images.shape[-1] == 224
    scores = det.score_data(test.data)["score"]
    assert np.isfinite(scores).all() and len(scores) == len(test.labels)
