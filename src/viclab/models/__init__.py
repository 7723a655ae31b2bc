"""Backbone registry: ``build_backbone(name) -> (module, feature_dim)``.

Every image backbone maps ``(B, 3, H, W)`` images to ``(B, feature_dim)`` representations,
``spec_cnn`` ``(B, 1, n_mels, frames)`` log-mel spectrograms; each exposes ``forward_features``
as the probing seam. Models never compute losses.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from viclab.core.errors import ViclabError
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder
from viclab.models.projector import build_projector
from viclab.models.resnet import ResNet18, ResNet50, exercise_resnet18, resnet18_cifar, resnet50
from viclab.models.small import Conv4, SmallCNN, conv4, small_cnn
from viclab.models.spectro import (
    DenseAutoencoder,
    SpecAutoencoder,
    SpecCNN,
    Standardize,
    fit_standardizers,
    spec_cnn,
    stack_frames,
)
from viclab.models.vit import VisionTransformer, load_backbone_state_dict, vit_small, vit_tiny

BACKBONES: dict[str, Callable[[], tuple[nn.Module, int]]] = {
    "exercise_resnet18": exercise_resnet18,
    "resnet18_cifar": resnet18_cifar,
    "small_cnn": small_cnn,
    "conv4": conv4,  # untrained: the feature map of Laplacian Eigenmaps (spec S7)
    "spec_cnn": spec_cnn,  # log-mel spectrograms (spec §4)
    "resnet50": resnet50,  # torchvision / VICReg layout, ImageNet stem
    "vit_tiny": vit_tiny,  # timm / DINO layout, 32 px, patch 4
    "vit_small": vit_small,
}


# Input channels of the backbones that do not take RGB images.
INPUT_CHANNELS: dict[str, int] = {"spec_cnn": 1}


def check_inputs(backbone: str, data) -> None:
    """Refuse data a backbone cannot take: RGB images for a spectrogram network, or the reverse.

    Args:
        backbone: a key of :data:`BACKBONES`.
        data: :class:`~viclab.data.ImageData` (uint8 images, or float log-mel spectrograms).
    """
    sound = data.images.is_floating_point()
    if INPUT_CHANNELS.get(backbone, 3) != data.images.shape[1]:
        if sound:
            raise ViclabError(f"model.backbone={backbone} takes RGB images, but the data are log-mel spectrograms of "
                              "sound clips; use model.backbone=spec_cnn (e.g. --preset sound)")
        raise ViclabError(f"model.backbone={backbone} takes log-mel spectrograms of sound, but the data are images; "
                          "use "
                          "an image backbone, e.g. model.backbone=small_cnn")


def check_view_size(encoder: nn.Module, size: int) -> None:
    """Refuse ``augment.size``-pixel views an encoder cannot take (a ViT's patches must tile them):
    checked before a run folder exists, not at the first step."""
    patch = getattr(getattr(encoder, "patch_embed", None), "patch_size", None)
    if patch and size % patch:
        fit = max(patch, size // patch * patch)
        raise ViclabError(f"augment.size={size} is not a multiple of the ViT patch size {patch}; use "
                          f"augment.size={fit} (or {fit + patch})")


def build_backbone(name: str) -> tuple[nn.Module, int]:
    """Instantiate a registered backbone; returns ``(module, feature_dim)``."""
    if name not in BACKBONES:
        raise ViclabError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}")
    return BACKBONES[name]()


__all__ = ["BACKBONES", "INPUT_CHANNELS", "Conv4", "ConvAutoencoder", "DenseAutoencoder", "ResNet18", "ResNet50",
           "SmallCNN", "SpecAutoencoder", "SpecCNN", "Standardize", "VisionTransformer", "build_autoencoder",
           "build_backbone", "build_projector", "check_inputs", "check_view_size", "fit_standardizers",
           "load_backbone_state_dict", "resnet50", "spec_cnn", "stack_frames", "vit_small", "vit_tiny"]

from viclab.models.vicreg import VICRegModel, build_vicreg_model  # noqa: E402

__all__ += ["VICRegModel", "build_vicreg_model"]
