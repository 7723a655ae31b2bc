"""ResNet-50 vs independent references: torchvision's / VICReg's state-dict layout and size, a functional forward."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.models.test_models import BN_ENTRIES, torchvision_resnet18_layout
from viclab.core.errors import ViclabError
from viclab.models import BACKBONES, ResNet50, build_backbone, load_backbone_state_dict

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride): resnet50 = [3, 4, 6, 3]


def torchvision_resnet50_layout(fc: bool = True) -> dict[str, tuple[int, ...]]:
    """``torchvision.models.resnet50().state_dict()`` as ordered ``{name: shape}``, built as torchvision builds it.

    Mirrors pytorch/vision ``torchvision/models/resnet.py``: ``ResNet.__init__`` (``inplanes = 64``; ``conv1 =
    Conv2d(3, 64, 7, stride 2, padding 3, bias=False)``, ``bn1``; ``layer1..4 = _make_layer(Bottleneck,
    64/128/256/512, 3/4/6/3, stride 1/2/2/2)``; ``fc = Linear(512 * 4, 1000)``), ``_make_layer`` (the first
    block gets ``downsample = Sequential(conv1x1(inplanes, planes * 4, stride), BatchNorm2d)`` when ``stride != 1
    or inplanes != planes * 4``; then ``inplanes = planes * 4``) and ``Bottleneck`` (``expansion = 4``, ``width =
    planes``; ``conv1 = conv1x1(inplanes, width)``, ``bn1``, ``conv2 = conv3x3(width, width, stride)``, ``bn2``,
    ``conv3 = conv1x1(width, planes * 4)``, ``bn3``, then the ``downsample``). facebookresearch/vicreg's
    ``resnet.py`` builds the same names and has no ``fc``, so ``fc=False`` is the layout of its ``resnet50.pth``.
    """
    layout: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        layout[f"{name}.weight"] = (cout, cin, k, k)

    def bn(name: str, c: int) -> None:
        layout.update({f"{name}.{e}": (() if e == "num_batches_tracked" else (c,)) for e in BN_ENTRIES})

    expansion, inplanes = 4, 64
    conv("conv1", 3, inplanes, 7)
    bn("bn1", inplanes)
    for i, (planes, blocks, stride) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p, s = f"layer{i}.{b}", stride if b == 0 else 1
            conv(f"{p}.conv1", inplanes, planes, 1)
            bn(f"{p}.bn1", planes)
            conv(f"{p}.conv2", planes, planes, 3)
            bn(f"{p}.bn2", planes)
            conv(f"{p}.conv3", planes, planes * expansion, 1)
            bn(f"{p}.bn3", planes * expansion)
            if b == 0 and (s != 1 or inplanes != planes * expansion):
                conv(f"{p}.downsample.0", inplanes, planes * expansion, 1)
                bn(f"{p}.downsample.1", planes * expansion)
            inplanes = planes * expansion
    if fc:
        layout["fc.weight"], layout["fc.bias"] = (1000, 512 * expansion), (1000,)
    return layout


def _learnable(layout: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {k: s for k, s in layout.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_parameter_count_is_torchvision_resnet50_without_fc():
    tv = torchvision_resnet50_layout()
    learnable = _learnable(tv)
    assert sum(math.prod(s) for s in learnable.values()) == 25_557_032  # torchvision's model card
    assert len(learnable) == 161 and sum(k.endswith("num_batches_tracked") for k in tv) == 53
    # The trunk counted by hand: stem conv + BN; per block 1x1, 3x3, 1x1 convs and their BNs; one projection
    # shortcut (conv + BN) per stage.
    trunk, inplanes = 64 * 3 * 49 + 2 * 64, 64
    for planes, blocks, _ in STAGES:
        out = 4 * planes
        trunk += inplanes * out + 2 * out  # downsample
        for b in range(blocks):
            cin = inplanes if b == 0 else out
            trunk += cin * planes + 2 * planes + planes * planes * 9 + 2 * planes + planes * out + 2 * out
        inplanes = out
    assert trunk == 25_557_032 - 2048 * 1000 - 1000 == 23_508_032
    model, dim = build_backbone("resnet50")
    assert dim == 2048 and "resnet50" in BACKBONES
    assert sum(p.numel() for p in model.parameters()) == trunk


def test_state_dict_is_torchvision_layout_without_fc_including_bn_buffers():
    model, _ = build_backbone("resnet50")
    own = _shapes(model)
    assert list(own.items()) == list(torchvision_resnet50_layout(fc=False).items())  # names, shapes, order
    assert sum(k.endswith("num_batches_tracked") for k in own) == 53
    assert sum(k.endswith(("running_mean", "running_var")) for k in own) == 106
    # torchvision v1.5 (and VICReg): the stride sits on the 3x3 conv, not on the first 1x1
    first = model.layer2[0]
    assert (first.conv1.stride, first.conv2.stride, first.downsample[0].stride) == ((1, 1), (2, 2), (2, 2))


def _random_state(layout: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.rand(s, generator=g) + 0.5
            for k, s in layout.items()}


def test_vicreg_layout_state_dict_loads_strictly():
    sd = _random_state(torchvision_resnet50_layout(fc=False), 0)
    model = ResNet50()
    model.load_state_dict(sd, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    assert model.layer4[2].bn3.num_batches_tracked.item() == 7


def test_loader_takes_a_wrapped_torchvision_checkpoint_with_fc():
    sd = _random_state(torchvision_resnet50_layout(fc=True), 1)
    model = ResNet50()
    load_backbone_state_dict(model, {f"module.{k}": v for k, v in sd.items()})
    own = model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items() if not k.startswith("fc."))


def test_bad_checkpoints_are_refused_in_one_line():
    model = ResNet50()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    resnet18 = _random_state(torchvision_resnet18_layout(), 2)  # every ResNet-18 name is a ResNet-50 name too
    # its fc is dropped, not unexpected; absent BatchNorm counters are filled in, not missing
    missing = len({k for k in set(torchvision_resnet50_layout(fc=False)) - set(resnet18)
                   if not k.endswith("num_batches_tracked")})
    with pytest.raises(ViclabError, match=rf"does not fit ResNet50: keys {missing} missing \(e\.g\. layer1\.0\.conv3"):
        load_backbone_state_dict(model, resnet18)
    sd = {k: torch.zeros(s) for k, s in torchvision_resnet50_layout(fc=False).items()}
    sd["layer1.0.conv2.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ViclabError, match=r"layer1\.0\.conv2\.weight has shape \(64, 64, 1, 1\)") as info:
        load_backbone_state_dict(model, sd)
    assert "\n" not in str(info.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def _bn_eval(x: torch.Tensor, sd: dict[str, torch.Tensor], p: str, eps: float = 1e-5) -> torch.Tensor:
    """BatchNorm2d in eval mode, written out."""
    view = lambda t: t.view(1, -1, 1, 1)
    return ((x - view(sd[f"{p}.running_mean"])) / torch.sqrt(view(sd[f"{p}.running_var"]) + eps)
            * view(sd[f"{p}.weight"]) + view(sd[f"{p}.bias"]))


def _reference_resnet50(x: torch.Tensor, sd: dict[str, torch.Tensor]) -> torch.Tensor:
    """torchvision's ResNet-50 forward in float64 from the state dict, without fc."""
    sd = {k: v.double() for k, v in sd.items()}
    h = F.relu(_bn_eval(F.conv2d(x.double(), sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    h = F.max_pool2d(h, 3, stride=2, padding=1)
    for i, (_, blocks, stride) in enumerate(STAGES, start=1):
        for b in range(blocks):
            p, s = f"layer{i}.{b}", stride if b == 0 else 1
            y = F.relu(_bn_eval(F.conv2d(h, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            y = F.relu(_bn_eval(F.conv2d(y, sd[f"{p}.conv2.weight"], stride=s, padding=1), sd, f"{p}.bn2"))
            y = _bn_eval(F.conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            short = h
            if f"{p}.downsample.0.weight" in sd:
                short = _bn_eval(F.conv2d(h, sd[f"{p}.downsample.0.weight"], stride=s), sd, f"{p}.downsample.1")
            h = F.relu(y + short)
    return h.mean(dim=(2, 3))


def test_forward_matches_functional_reference_on_64px():
    torch.manual_seed(0)
    model, _ = build_backbone("resnet50")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random BN statistics and affine parameters, so no BN is the identity
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                c = mod.num_features
                mod.running_mean.copy_(0.1 * torch.randn(c, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(c, generator=g))
                mod.weight.copy_(0.5 + 0.5 * torch.rand(c, generator=g))
                mod.bias.copy_(0.1 * torch.randn(c, generator=g))
    model.eval()
    x = torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        got = model(x)
        assert torch.equal(got, model.forward_features(x))
    expect = _reference_resnet50(x, model.state_dict())
    assert got.shape == (2, 2048)
    torch.testing.assert_close(got.double(), expect, rtol=1e-4, atol=1e-4 * expect.abs().max().item())
