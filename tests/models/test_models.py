"""Backbones vs independent references: torchvision's ResNet-18 layout, a functional forward, spec §2."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from viclab.config import ModelConfig
from viclab.core.errors import ViclabError
from viclab.models import BACKBONES, IMAGENET_MEAN, build_backbone, build_projector, build_vicreg_model

BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet18_layout() -> dict[str, tuple[int, ...]]:
    """``torchvision.models.resnet18().state_dict()`` as ordered ``{name: shape}``, built as torchvision builds it.

    Mirrors pytorch/vision ``torchvision/models/resnet.py``: ``ResNet.__init__`` (``inplanes = 64``;
    ``conv1 = Conv2d(3, 64, 7, stride 2, padding 3, bias=False)``, ``bn1``; ``layer1..4 = _make_layer(BasicBlock,
    64/128/256/512, 2, stride 1/2/2/2)``; ``fc = Linear(512 * expansion, 1000)``), ``_make_layer`` (the first block
    gets ``downsample = Sequential(conv1x1(inplanes, planes * expansion, stride), BatchNorm2d)`` when ``stride != 1
    or inplanes != planes * expansion``; then ``inplanes = planes * expansion``) and ``BasicBlock`` (``expansion =
    1``; ``conv1 = conv3x3(inplanes, planes, stride)``, ``bn1``, ``conv2 = conv3x3(planes, planes)``, ``bn2``, then
    the ``downsample`` it is given). Convolutions have no bias; BatchNorm2d has the five entries of ``BN_ENTRIES``.
    """
    layout: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        layout[f"{name}.weight"] = (cout, cin, k, k)

    def bn(name: str, c: int) -> None:
        layout.update({f"{name}.{e}": (() if e == "num_batches_tracked" else (c,)) for e in BN_ENTRIES})

    expansion, inplanes = 1, 64
    conv("conv1", 3, inplanes, 7)
    bn("bn1", inplanes)
    for i, (planes, stride) in enumerate(((64, 1), (128, 2), (256, 2), (512, 2)), start=1):
        for b in range(2):  # resnet18: layers = [2, 2, 2, 2]
            p, s = f"layer{i}.{b}", stride if b == 0 else 1
            conv(f"{p}.conv1", inplanes, planes, 3)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            if b == 0 and (s != 1 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0", inplanes, planes * expansion, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    layout["fc.weight"], layout["fc.bias"] = (1000, 512 * expansion), (1000,)
    return layout


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_reference_layout_is_resnet18():
    """The generator reproduces torchvision resnet18's published size: 11,689,512 parameters, 62 weight tensors."""
    tv = torchvision_resnet18_layout()
    learnable = [s for k, s in tv.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert sum(torch.Size(s).numel() for s in learnable) == 11_689_512  # torchvision's model card
    assert len(learnable) == 62 and sum(k.endswith("num_batches_tracked") for k in tv) == 20


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


def _exercise_expected() -> dict[str, tuple[int, ...]]:
    """torchvision's layout with spec §2's documented differences: 3x3 conv1 with bias, fc 512->512, the head."""
    exp = torchvision_resnet18_layout()
    exp["conv1.weight"] = (64, 3, 3, 3)
    exp = {"conv1.weight": exp.pop("conv1.weight"), "conv1.bias": (64,), **exp}
    exp["fc.weight"], exp["fc.bias"] = (512, 512), (512,)
    exp.update({f"head.0.{e}": (() if e == "num_batches_tracked" else (512,)) for e in BN_ENTRIES})
    exp["head.2.weight"], exp["head.2.bias"] = (128, 512), (128,)
    return exp


def test_exercise_encoder_has_torchvision_layout_with_documented_differences():
    own = _shapes(build_backbone("exercise_resnet18")[0])
    expected = _exercise_expected()
    assert own == expected
    assert list(own) == list(expected)  # same order as torchvision's state dict, too
    tv = torchvision_resnet18_layout()
    assert {k for k in tv if own[k] != tv[k]} == {"conv1.weight", "fc.weight", "fc.bias"}


def test_resnet18_cifar_has_torchvision_layout_without_fc():
    f, dim = build_backbone("resnet18_cifar")
    assert dim == 512
    assert (f.conv1.kernel_size, f.conv1.padding, f.conv1.bias) == ((3, 3), (1, 1), None)
    expected = {k: s for k, s in torchvision_resnet18_layout().items() if not k.startswith("fc.")}
    expected["conv1.weight"] = (64, 3, 3, 3)
    assert list(_shapes(f).items()) == list(expected.items())
    f.eval()
    assert f(torch.randn(2, 3, 32, 32)).shape == (2, 512)


def _random_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g) + 0.5
            for k, s in layout.items()}


def test_torchvision_named_weights_load_into_the_trunks():
    # resnet18_cifar: torchvision's names and shapes (3x3 stem, no fc) load strictly, every value lands.
    f, _ = build_backbone("resnet18_cifar")
    layout = {k: s for k, s in torchvision_resnet18_layout().items() if not k.startswith("fc.")}
    layout["conv1.weight"] = (64, 3, 3, 3)
    sd = _random_state(layout, 0)
    f.load_state_dict(sd, strict=True)
    for k, v in f.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # exercise_resnet18: the torchvision-named state dict with its shapes covers all but conv1.bias and the head.
    f, _ = build_backbone("exercise_resnet18")
    layout = {k: s for k, s in _exercise_expected().items() if k != "conv1.bias" and not k.startswith("head.")}
    assert set(layout) == set(torchvision_resnet18_layout())
    sd = _random_state(layout, 1)
    result = f.load_state_dict(sd, strict=False)
    assert result.unexpected_keys == []
    # (BatchNorm fills a missing num_batches_tracked itself, so it is not reported)
    assert set(result.missing_keys) == {"conv1.bias", "head.0.weight", "head.0.bias", "head.0.running_mean",
                                        "head.0.running_var", "head.2.weight", "head.2.bias"}
    own = f.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items())


def test_published_resnet18_trunk_loads_except_stem_and_fc():
    """A real torchvision resnet18 state dict (7x7 stem, 1000-way fc) fits everywhere but conv1 and fc."""
    sd = _random_state(torchvision_resnet18_layout(), 2)
    for name in ("exercise_resnet18", "resnet18_cifar"):
        f, _ = build_backbone(name)
        own = f.state_dict()
        clash = {k for k, v in sd.items() if k in own and own[k].shape != v.shape}
        assert clash == ({"conv1.weight", "fc.weight", "fc.bias"} if name == "exercise_resnet18" else {"conv1.weight"})
        trunk = {k: v for k, v in sd.items() if k != "conv1.weight" and not k.startswith("fc.")}
        result = f.load_state_dict(trunk, strict=False)
        assert result.unexpected_keys == [] and torch.equal(f.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_registry_contract(name):
    f, dim = build_backbone(name)
    f.eval()
    x = torch.randn(3, BACKBONES[name].channels, 32, 32)
    assert f(x).shape == (3, dim)
    assert f.forward_features(x).shape[0] == 3


def test_registry_facts_name_each_backbones_inputs():
    """The normalisation the schema's default gives CIFAR-trained backbones, ImageNet's for resnet50, none for
    the spectrogram network (it standardises its own one-channel inputs)."""
    from viclab.config import AugmentConfig

    cifar = [b for b in BACKBONES.values() if b.name not in ("resnet50", "spec_cnn")]
    assert cifar and all((b.channels, b.size, b.mean, b.std) == (3, 32, AugmentConfig.mean, AugmentConfig.std)
                         for b in cifar)
    assert (BACKBONES["resnet50"].size, BACKBONES["resnet50"].mean) == (224, IMAGENET_MEAN)
    spec = BACKBONES["spec_cnn"]
    assert (spec.channels, spec.mean, spec.std, spec.modality) == (1, None, None, "spectrogram")


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


def _bn_eval(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm in eval mode, written out: ``(x - mean) / sqrt(var + eps) * weight + bias`` per channel."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean, var = sd[f"{p}.running_mean"].view(shape), sd[f"{p}.running_var"].view(shape)
    return (x - mean) / torch.sqrt(var + eps) * sd[f"{p}.weight"].view(shape) + sd[f"{p}.bias"].view(shape)


def _random_bn(net: nn.Module, g: torch.Generator) -> None:
    """Random BN statistics and affine parameters (signed), so no BN is the identity."""
    with torch.no_grad():
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm1d | nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.3 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.01 + torch.rand(c, generator=g))
                mod.weight.copy_(torch.randn(c, generator=g))
                mod.bias.copy_(0.2 * torch.randn(c, generator=g))


def _reference_forward(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """small_cnn then the ``64-32`` projector, functionally in float64 from the state dict.

    small_cnn (models/small.py): stem ``conv3x3(3, 32) -> BN -> ReLU``; per stage 32->64->128->256 ``conv3x3 ->
    2x2 max-pool -> BN -> ReLU -> conv3x3 -> BN -> ReLU``; global average pool. Projector (models/projector.py):
    ``Linear(256, 64) -> BN1d -> ReLU -> Linear(64, 32)``. Indices are positions in the ``Sequential``s.
    """
    sd = {k: v.double() for k, v in sd.items()}
    conv = lambda h, i: F.conv2d(h, sd[f"encoder.features.{i}.weight"], padding=1)
    h = F.relu(_bn_eval(conv(x.double(), 0), sd, "encoder.features.1"))
    for stage in range(3):
        i = 3 + 7 * stage
        h = F.relu(_bn_eval(F.max_pool2d(conv(h, i), 2), sd, f"encoder.features.{i + 2}"))
        h = F.relu(_bn_eval(conv(h, i + 4), sd, f"encoder.features.{i + 5}"))
    h = h.mean(dim=(2, 3))
    h = h @ sd["projector.0.weight"].T + sd["projector.0.bias"]
    h = F.relu(_bn_eval(h, sd, "projector.1"))
    return h @ sd["projector.3.weight"].T + sd["projector.3.bias"]


def test_vicreg_model_forward_matches_functional_reference():
    torch.manual_seed(0)
    m, d = build_vicreg_model(ModelConfig(backbone="small_cnn", projector="64-32"))
    assert d == 32 and m.feature_dim == 256
    g = torch.Generator().manual_seed(1)
    _random_bn(m, g)
    m.eval()
    x = torch.randn(4, 3, 32, 32, generator=g)
    with torch.no_grad():
        got = m(x)
    expect = _reference_forward(x, m.state_dict())
    assert got.shape == (4, 32)
    torch.testing.assert_close(got.double(), expect, rtol=2e-5, atol=2e-5 * expect.abs().max().item())


def test_small_cnn_pf_matches_functional_reference():
    """small_cnn_pf: stem ``conv3x3(3, 32) -> BN -> ReLU``; per stage ``2x2 max-pool -> conv3x3 -> BN -> ReLU ->
    conv3x3 -> BN -> ReLU`` (32->64->128->256); global average pool, written out in float64 (eval-mode BN)."""
    torch.manual_seed(0)
    net, dim = build_backbone("small_cnn_pf")
    g = torch.Generator().manual_seed(2)
    _random_bn(net, g)
    net.eval()
    sd = {k: v.double() for k, v in net.state_dict().items()}
    block = lambda h, i: F.relu(_bn_eval(F.conv2d(h, sd[f"features.{i}.weight"], padding=1), sd, f"features.{i + 1}"))
    x = torch.randn(3, 3, 32, 32, generator=g)
    h = block(x.double(), 0)
    for stage in range(3):
        i = 3 + 7 * stage
        h = block(block(F.max_pool2d(h, 2), i + 1), i + 4)
    with torch.no_grad():
        got = net(x)
    assert dim == 256 and got.shape == (3, 256)
    expect = h.mean(dim=(2, 3))
    torch.testing.assert_close(got.double(), expect, rtol=2e-5, atol=2e-5 * expect.abs().max().item())
