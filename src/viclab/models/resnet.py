"""ResNet-18 variants and ResNet-50 with torchvision's parameter names (so its weights load): ``conv1, bn1, relu,
maxpool, layer1..layer4 (BasicBlock: conv1, bn1, conv2, bn2, downsample.0/1), avgpool, fc``; ResNet-50 the same
with Bottleneck blocks (``conv1..3, bn1..3, downsample.0/1``)."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.models.registry import IMAGENET_MEAN, IMAGENET_STD, register
from viclab.models.small import init_convs


def _trunk(net: nn.Module, x: Tensor) -> Tensor:
    """A torchvision-layout ResNet's stem, four stages and global average pool: ``(B, 3, H, W) -> (B, C)``."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    x = net.layer4(net.layer3(net.layer2(net.layer1(x))))
    return net.avgpool(x).flatten(1)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module | None:
    """The 1x1-projected shortcut of a block that changes the shape (``None``: the identity)."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False), nn.BatchNorm2d(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1-projected) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _shortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


# The first convolution of each stem: (kernel, stride, padding, bias).
_STEMS = {"exercise": (3, 1, 0, True), "cifar": (3, 1, 1, False), "imagenet": (7, 2, 3, False)}


STAGES = ("layer1", "layer2", "layer3", "layer4")  # the blocks whose outputs multi-layer features pool


class ResNet18(nn.Module):
    """ResNet-18 trunk with a configurable stem, ``fc`` and optional ``head``.

    Args:
        stem: ``"exercise"``: a 3x3 conv without padding, with bias (spec §2); ``"cifar"``: 3x3, padding 1,
            no bias; ``"imagenet"``: torchvision's 7x7/2 conv and 3x3/2 max-pool (the others have none).
        fc_dim: output width of ``fc``; ``None`` makes ``fc`` the identity.
        head_dim: if set, ``head = BatchNorm1d -> ReLU -> Linear(fc_dim, head_dim)``.
    """

    def __init__(self, stem: str = "cifar", fc_dim: int | None = None, head_dim: int | None = None) -> None:
        super().__init__()
        if stem not in _STEMS:
            raise ValueError(f"unknown stem {stem!r}")
        kernel, stride, padding, bias = _STEMS[stem]
        self.conv1 = nn.Conv2d(3, 64, kernel, stride=stride, padding=padding, bias=bias)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        cins, widths = (64, 64, 128, 256), (64, 128, 256, 512)  # stride 2 where the width doubles
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(BasicBlock(cin, w, 1 if cin == w else 2), BasicBlock(w, w)) for cin, w in zip(cins, widths))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, fc_dim) if fc_dim else nn.Identity()
        self.head = (nn.Sequential(nn.BatchNorm1d(fc_dim), nn.ReLU(inplace=True), nn.Linear(fc_dim, head_dim))
                     if head_dim else nn.Identity())
        init_convs(self)

    forward_features = _trunk  # (B, 3, H, W) images -> (B, 512) pooled trunk features
    stage_names = STAGES

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images -> ``(B, D)`` representation."""
        return self.head(self.fc(self.forward_features(x)))


@register()
def exercise_resnet18() -> tuple[nn.Module, int]:
    """The exercise encoder f (spec §2): 128-d representation."""
    return ResNet18(stem="exercise", fc_dim=512, head_dim=128), 128


@register()
def resnet18_cifar() -> tuple[nn.Module, int]:
    """The usual CIFAR ResNet-18 (3x3 stem, no max-pool), 512-d features."""
    return ResNet18(stem="cifar"), 512


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4), with an identity (or 1x1-projected) shortcut; the stride on the 3x3
    (torchvision's and VICReg's "ResNet v1.5"), not on the first 1x1 as in the original paper."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _shortcut(in_planes, out_planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """torchvision's ResNet-50 trunk (ImageNet stem, Bottleneck layers [3, 4, 6, 3]), ``fc`` the identity: the
    state dict of ``torchvision.models.resnet50`` without ``fc.*``, exactly that of VICReg's ``resnet50.pth`` (whose
    extra zero-padding layer has no parameters and, with its 7x7 conv's padding 2, pads as padding 3 does)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        layers, in_planes = [], 64
        for planes, n_blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            blocks = [Bottleneck(in_planes, planes, stride)]
            in_planes = planes * Bottleneck.expansion
            blocks += [Bottleneck(in_planes, planes) for _ in range(n_blocks - 1)]
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Identity()
        self.feature_dim = in_planes  # 2048
        init_convs(self)

    forward_features = _trunk  # (B, 3, H, W) images -> (B, 2048) pooled trunk features
    stage_names = STAGES

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` images -> ``(B, 2048)`` representation."""
        return self.fc(self.forward_features(x))


@register(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)  # torchvision / VICReg layout, ImageNet stem
def resnet50() -> tuple[nn.Module, int]:
    """torchvision / VICReg ResNet-50 trunk (ImageNet stem), 2048-d features."""
    net = ResNet50()
    return net, net.feature_dim
