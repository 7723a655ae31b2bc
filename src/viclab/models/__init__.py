"""Backbones, registered with their facts (:mod:`viclab.models.registry`): ``build_backbone(name) -> (module, dim)``.

Every image backbone maps ``(B, 3, H, W)`` images to ``(B, feature_dim)`` representations,
``spec_cnn`` ``(B, 1, n_mels, frames)`` log-mel spectrograms; each exposes ``forward_features``
as the probing seam. Models never compute losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from viclab.core.errors import ViclabError
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder
from viclab.models.projector import build_projector
from viclab.models.registry import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Backbone, get_backbone
from viclab.models.resnet import ResNet18, ResNet50, resnet50
from viclab.models.small import Conv4, SmallCNN
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

if TYPE_CHECKING:
    from viclab.data.types import ImageData


def input_modality(backbone: str) -> str:
    """What a backbone takes (:data:`viclab.data.MODALITIES`): ``spectrogram`` for a one-channel network, else
    ``image`` (RGB)."""
    return BACKBONES[backbone].modality if backbone in BACKBONES else "image"


def check_inputs(backbone: str, data: ImageData) -> None:
    """Refuse data a backbone cannot take: RGB images for a spectrogram network, or the reverse.

    Args:
        backbone: a key of :data:`BACKBONES`.
        data: the inputs; their ``modality`` must be the backbone's (:func:`input_modality`).
    """
    if input_modality(backbone) != data.modality:
        if data.modality == "spectrogram":
            raise ViclabError(f"model.backbone={backbone} takes RGB images, but the data are log-mel spectrograms of "
                              "sound clips; use model.backbone=spec_cnn (e.g. --preset sound)")
        raise ViclabError(f"model.backbone={backbone} takes log-mel spectrograms of sound, but the data are images; "
                          "use an image backbone, e.g. model.backbone=small_cnn")


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
    return get_backbone(name).build()


__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "Backbone", "Conv4", "ConvAutoencoder", "DenseAutoencoder",
           "ResNet18", "ResNet50", "SmallCNN", "SpecAutoencoder", "SpecCNN", "Standardize", "VisionTransformer",
           "build_autoencoder", "build_backbone", "build_projector", "check_inputs", "check_view_size",
           "fit_standardizers", "get_backbone", "input_modality", "load_backbone_state_dict", "resnet50", "spec_cnn",
           "stack_frames", "vit_small", "vit_tiny"]

from viclab.models.vicreg import VICRegModel, build_vicreg_model  # noqa: E402

__all__ += ["VICRegModel", "build_vicreg_model"]
