"""Backbone registry: ``build_backbone(name) -> (module, feature_dim)``.

Every backbone maps ``(B, 3, H, W)`` images to ``(B, feature_dim)`` representations
and exposes ``forward_features`` as the probing seam. Models never compute losses.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from viclab.errors import ViclabError
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder
from viclab.models.projector import build_projector
from viclab.models.resnet import ResNet18, exercise_resnet18, resnet18_cifar
from viclab.models.small import Conv4, SmallCNN, conv4, small_cnn

BACKBONES: dict[str, Callable[[], tuple[nn.Module, int]]] = {
    "exercise_resnet18": exercise_resnet18,
    "resnet18_cifar": resnet18_cifar,
    "small_cnn": small_cnn,
    "conv4": conv4,  # untrained: the feature map of Laplacian Eigenmaps (spec S7)
}


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """Instantiate a registered backbone; returns ``(module, feature_dim)``."""
    if name not in BACKBONES:
        raise ViclabError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]()


__all__ = ["BACKBONES", "Conv4", "ConvAutoencoder", "ResNet18", "SmallCNN", "build_autoencoder", "build_backbone",
           "build_projector"]

from viclab.models.vicreg import VICRegModel, build_vicreg_model  # noqa: E402

__all__ += ["VICRegModel", "build_vicreg_model"]
