"""Backbones: spec §2 structure, torchvision key compatibility, registry contract."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from viclab.config import ModelConfig
from viclab.errors import ViclabError
from viclab.models import BACKBONES, build_backbone, build_projector, build_vicreg_model


def torchvision_resnet18_keys() -> list[str]:
    """torchvision.models.resnet18().state_dict() key names, written out from its layout."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight", *(f"bn1.{s}" for s in bn)]
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            keys += [f"{p}.conv1.weight", *(f"{p}.bn1.{s}" for s in bn),
                     f"{p}.conv2.weight", *(f"{p}.bn2.{s}" for s in bn)]
            if layer > 1 and block == 0:
                keys += [f"{p}.downsample.0.weight", *(f"{p}.downsample.1.{s}" for s in bn)]
    return keys + ["fc.weight", "fc.bias"]


def test_exercise_encoder_follows_spec():
    f, dim = build_backbone("exercise_resnet18")
    assert dim == 128
    c = f.conv1
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) == (3, 64, (3, 3), (1, 1), (0, 0))
    assert c.bias is not None
    assert isinstance(f.maxpool, nn.Identity)
    assert (f.fc.in_features, f.fc.out_features) == (512, 512)
    assert [type(m) for m in f.head] == [nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert f.head[0].num_features == 512 and f.head[2].out_features == 128
    f.eval()
    x = torch.randn(2, 3, 32, 32)
    assert f(x).shape == (2, 128)
    assert f.forward_features(x).shape == (2, 512)


def test_exercise_encoder_loads_torchvision_named_weights():
    f, _ = build_backbone("exercise_resnet18")
    own = f.state_dict()
    tv_keys = torchvision_resnet18_keys()
    # every torchvision key exists here; the only extras are the spec's head and conv1 bias
    assert set(tv_keys) <= set(own)
    extra = {k for k in own if k.startswith("head.")} | {"conv1.bias"}
    assert {k for k in own if k not in tv_keys} == extra
    # a state dict under torchvision's names (with this net's shapes) loads into the trunk
    sd = {k: torch.full_like(own[k], 0.5) if own[k].is_floating_point() else own[k] for k in tv_keys}
    result = f.load_state_dict(sd, strict=False)
    # (BatchNorm fills a missing num_batches_tracked itself, so it is not reported)
    assert result.unexpected_keys == []
    assert set(result.missing_keys) == {k for k in extra if not k.endswith("num_batches_tracked")}
    assert torch.all(f.layer3[1].conv2.weight == 0.5)


def test_resnet18_cifar_stem_and_keys():
    f, dim = build_backbone("resnet18_cifar")
    assert dim == 512
    assert (f.conv1.kernel_size, f.conv1.padding, f.conv1.bias) == ((3, 3), (1, 1), None)
    assert set(torchvision_resnet18_keys()) - {"fc.weight", "fc.bias"} == set(f.state_dict())
    f.eval()
    assert f(torch.randn(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_registry_contract(name):
    f, dim = build_backbone(name)
    f.eval()
    x = torch.randn(3, 3, 32, 32)
    assert f(x).shape == (3, dim)
    assert f.forward_features(x).shape[0] == 3


def test_unknown_backbone_is_a_user_error():
    with pytest.raises(ViclabError, match="unknown backbone 'vit'"):
        build_backbone("vit")


def test_projector_from_spec_string():
    h, out = build_projector(128, "512-512-512")
    assert out == 512
    kinds = [type(m) for m in h]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert [(m.in_features, m.out_features) for m in h if isinstance(m, nn.Linear)] == [(128, 512), (512, 512),
                                                                                       (512, 512)]
    with pytest.raises(ViclabError):
        build_projector(128, "512-x")


def test_vicreg_model_is_encoder_then_projector():
    m, d = build_vicreg_model(ModelConfig())
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    assert d == 512 and m.feature_dim == 128
    torch.testing.assert_close(m(x), m.projector(m.encoder(x)))
