"""A small, fast CNN for 2-core CPUs."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.models.registry import register


def init_convs(net: nn.Module) -> None:
    """He initialisation of every (transposed) convolution, as torchvision's ResNets."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """Stem conv, then per stage ``conv -> 2x2 max-pool -> conv`` (VGG/airbench-like): pooling right after each
    stage's first conv puts most of the compute at low resolution, which makes it fast on a CPU.

    Args:
        widths: stem width followed by one width per stage; the last is the feature dim.
        pool_first: pool before each stage's first conv instead, running it at a quarter of the pixels.
        in_channels: input channels (3 for RGB, 1 for spectrograms).
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), pool_first: bool = False,
                 in_channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = _conv_bn(in_channels, widths[0])
        for cin, cout in zip(widths[:-1], widths[1:]):
            if pool_first:
                layers += [nn.MaxPool2d(2), *_conv_bn(cin, cout), *_conv_bn(cout, cout)]
            else:
                layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2),
                           nn.BatchNorm2d(cout), nn.ReLU(inplace=True), *_conv_bn(cout, cout)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = widths[-1]
        # The ReLU closing the stem and each stage: the layers multi-layer features pool (viclab.represent.layers).
        relus = [i for i, m in enumerate(layers) if isinstance(m, nn.ReLU)]
        self.stage_names = tuple(f"features.{i}" for i in relus[::2])
        init_convs(self)

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, in_channels, H, W)`` -> ``(B, widths[-1])``."""
        return self.pool(self.features(x)).flatten(1)

    forward = forward_features


@register()
def small_cnn() -> tuple[nn.Module, int]:
    """Default small CNN: widths 32-64-128-256, 256-d features."""
    net = SmallCNN()
    return net, net.feature_dim


@register()
def small_cnn_pf() -> tuple[nn.Module, int]:
    """The small CNN pooling first in each stage: half the multiply-adds of :func:`small_cnn` (43M vs 86M per
    32-px image), 1.6x its training images/s on 2 fp32 cores, and more linear probe per minute there
    (docs/cpu_recipe.md)."""
    net = SmallCNN(pool_first=True)
    return net, net.feature_dim


class Conv4(nn.Module):
    """Four ``conv 3x3 -> ReLU -> 2x2 max-pool`` blocks, then a linear layer to ``out_dim`` (spec S7): untrained,
    the seeded random feature map of Laplacian Eigenmaps."""

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), out_dim: int = 1024, size: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in zip((3, *widths[:-1]), widths):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        side = size >> len(widths)
        self.fc = nn.Linear(widths[-1] * side * side, out_dim)
        self.feature_dim = out_dim

    def forward_features(self, x: Tensor) -> Tensor:
        """``(B, 3, 32, 32)`` -> ``(B, out_dim)``."""
        return self.fc(self.features(x).flatten(1))

    forward = forward_features


@register()  # untrained: the feature map of Laplacian Eigenmaps (spec S7)
def conv4() -> tuple[nn.Module, int]:
    """The course's random feature map for Laplacian Eigenmaps: 4 conv layers, linear to 1024."""
    net = Conv4()
    return net, net.feature_dim
