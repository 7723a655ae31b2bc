"""The backbone registry: each backbone registered where it is defined, with its facts (timm's ``pretrained_cfg``).

The CIFAR-trained backbones see CIFAR-10's channel statistics (:class:`~viclab.config.AugmentConfig`'s default);
``resnet50``, like the published ImageNet checkpoints, ImageNet's; ``spec_cnn`` none (it standardises its inputs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from viclab.config import AugmentConfig
from viclab.core.errors import ViclabError

Builder = Callable[[], tuple[nn.Module, int]]

CIFAR_MEAN, CIFAR_STD = AugmentConfig.mean, AugmentConfig.std
# ImageNet's channel statistics: what VICReg's resnet50.pth, DINO and most timm ImageNet checkpoints were
# trained to see (timm's augreg ViTs use 0.5 / 0.5: give those as a run's augment.mean/std instead).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """A registered backbone: how to build it and what it takes.

    Attributes:
        name: its registry key (``model.backbone``).
        build: ``() -> (module, feature_dim)``; the module maps ``(B, channels, H, W)`` to ``(B, feature_dim)``.
        channels: input channels (3: RGB images; 1: log-mel spectrograms).
        size: the native input side in pixels (``None``: any, e.g. a spectrogram's mel bands x frames).
        mean, std: per-channel normalisation of its inputs (``None``: none, the network standardises them).
    """

    name: str
    build: Builder
    channels: int = 3
    size: int | None = 32
    mean: tuple[float, ...] | None = CIFAR_MEAN
    std: tuple[float, ...] | None = CIFAR_STD

    @property
    def modality(self) -> str:
        """What it takes (:data:`viclab.data.MODALITIES`): ``spectrogram`` (one channel) or ``image`` (RGB)."""
        return "spectrogram" if self.channels == 1 else "image"


BACKBONES: dict[str, Backbone] = {}


def register(channels: int = 3, size: int | None = 32, mean: tuple[float, ...] | None = CIFAR_MEAN,
             std: tuple[float, ...] | None = CIFAR_STD, name: str | None = None) -> Callable[[Builder], Builder]:
    """Decorator: register a builder under its function name (or ``name``) with its facts (:class:`Backbone`)."""

    def add(build: Builder) -> Builder:
        key = name or build.__name__
        BACKBONES[key] = Backbone(key, build, channels, size, mean, std)
        return build

    return add


def get_backbone(name: str) -> Backbone:
    """A registered backbone's facts; a ViclabError lists the registered names if ``name`` is not one."""
    if name not in BACKBONES:
        raise ViclabError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """Instantiate a registered backbone; returns ``(module, feature_dim)``."""
    return get_backbone(name).build()


__all__ = ["BACKBONES", "Backbone", "IMAGENET_MEAN", "IMAGENET_STD", "build_backbone", "get_backbone", "register"]
