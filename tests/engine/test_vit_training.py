"""VICReg with a vision transformer: the ``vit`` preset trains, its optimiser leaves norms and biases
undecayed, and a ViT serves as the encoder of an anomaly detector."""

from __future__ import annotations

import math

import numpy as np
import torch

from tests.detect.test_detect import TINY as DETECT_TINY
from tests.detect.test_detect import folders  # noqa: F401  (the fixture)
from tests.engine.test_train import QUIET
from viclab.config import resolve
from viclab.engine import train
from viclab.engine.checkpoint import load_checkpoint
from viclab.represent.encode import load_source


def test_vit_preset_trains_and_keeps_norms_and_biases_undecayed(fake_cifar_root, tmp_path):
    cfg = resolve("train", "vit", overrides=[f"data.data_dir={fake_cifar_root}", "model.projector=32-32",
                                             "train.batch_size=20", "train.epochs=1", "optim.warmup_epochs=0.5",
                                             "augment.size=16"])  # 16 px: the 8x8 position grid resampled to 4x4
    result = train(cfg, tmp_path / "vit", **QUIET)
    assert math.isfinite(result.train["loss"]) and math.isfinite(result.test["loss"])
    source = load_source(result.run_dir)
    assert source.dim == 192 and source.config.model.backbone == "vit_tiny"
    groups = load_checkpoint(result.run_dir / "checkpoint.pt", keys=("optimizers",))["optimizers"][0]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    # the groups by name, as the optimiser of this recipe holds them
    from viclab.engine.vicreg import make_optimizer
    from viclab.models import build_vicreg_model

    model, _ = build_vicreg_model(cfg.model)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, exempt = ({names[id(p)] for p in g["params"]} for g in make_optimizer(cfg, model).param_groups)
    assert {"encoder.cls_token", "encoder.pos_embed", "encoder.patch_embed.proj.weight",
            "encoder.blocks.0.attn.qkv.weight"} <= decayed
    assert {"encoder.blocks.0.norm1.weight", "encoder.norm.bias", "encoder.blocks.0.attn.qkv.bias"} <= exempt
    assert decayed.isdisjoint(exempt) and len(decayed) + len(exempt) == len(names)


def test_a_vit_encoder_under_the_vicreg_terms_detector(folders, tmp_path):  # noqa: F811
    from viclab.core.context import QUIET
    from viclab.detect import fit_detector, load_detector, load_test

    cfg = resolve("detect", "vit", overrides=[f"data.normal={folders / 'normal'}",
                                              f"data.abnormal={folders / 'abnormal'}", *DETECT_TINY,
                                              "detect.detector=vicreg_terms", "detect.views=2",
                                              "optim.warmup_epochs=0.5"])
    assert cfg.recipe.model.backbone == "vit_tiny"
    fit_detector(cfg, tmp_path / "det", ctx=QUIET)
    det, _ = load_detector(tmp_path / "det")
    scores = det.score(load_test(cfg.data).data.images)
    assert all(np.isfinite(v).all() for v in scores.values()) and len(scores["score"]) > 0
    assert isinstance(det.network.encoder.blocks, torch.nn.Sequential)
