"""Multi-layer features (issue 27): every stage pooled, against the stages run by hand, and A1 on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.config import EvalConfig
from viclab.core.context import QUIET
from viclab.detect.anomaly import run_anomaly
from viclab.models import build_backbone
from viclab.represent.encode import load_source, representations
from viclab.represent.layers import StagePool, stage_source


def _by_hand(name: str, x: torch.Tensor) -> torch.Tensor:
    """The stem's and each stage's output, run module by module, global-average-pooled and concatenated."""
    torch.manual_seed(0)
    net, _ = build_backbone(name)
    net.eval()
    pooled = []
    with torch.no_grad():
        if name.startswith("small_cnn"):
            h = x
            for i, m in enumerate(net.features):
                h = m(h)
                if i == 2 or (i > 2 and (i - 2) % 7 == 0):  # stem [conv, bn, relu], then 7 modules per stage
                    pooled.append(h.mean((2, 3)))
        else:
            h = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
                h = layer(h)
                pooled.append(h.mean((2, 3)))
    return torch.cat(pooled, 1)


@pytest.mark.parametrize("name, width", [("small_cnn", 480), ("small_cnn_pf", 480), ("resnet18_cifar", 960)])
def test_stage_pool_is_every_stage_pooled(name, width):
    x = torch.randn(3, 3, 32, 32)
    torch.manual_seed(0)
    net, _ = build_backbone(name)
    with torch.no_grad():
        got = StagePool(net.eval())(x)
    assert got.shape == (3, width)
    torch.testing.assert_close(got, _by_hand(name, x), rtol=1e-5, atol=1e-6)


def test_a1_on_every_stage_is_knn_on_the_pooled_stages(tiny_run, tmp_path):
    run, root = tiny_run
    out = run_anomaly([run], tmp_path, str(root), cfg=EvalConfig(anomaly_k=2, anomaly_layers="all"), ctx=QUIET)
    enc = stage_source(load_source(run))
    assert enc.dim == 480 and out["runs"][0]["name"].endswith("all stages")
    reading = QUIET.reading(str(root))
    train = representations(enc, "train", ctx=reading).features
    test = np.concatenate([representations(enc, "test", ctx=reading).features,
                           representations(enc, "test", "mnist", ctx=reading).features])
    d = np.sqrt(((test.astype(np.float64)[:, None] - train.astype(np.float64)[None]) ** 2).sum(-1))
    np.testing.assert_allclose(np.load(tmp_path / "scores-tiny__all_stages.npy"), np.sort(d, 1)[:, :2].mean(1),
                               rtol=1e-4)
    last = representations(load_source(run), "train", ctx=reading).features
    assert last.shape[1] != 480  # the stages' representations are cached apart from the encoder's output
