"""Backbones, registered with their facts (:mod:`viclab.models.registry`): ``build_backbone(name) -> (module, dim)``.

Each maps ``(B, 3, H, W)`` images (``spec_cnn``: ``(B, 1, n_mels, frames)`` log-mel spectrograms) to ``(B, dim)``
representations and exposes ``forward_features`` as the probing seam. Models never compute losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from viclab.core.errors import ViclabError
from viclab.models.autoencoder import ConvAutoencoder, build_autoencoder
from viclab.models.projector import build_projector
from viclab.models.registry import BACKBONES, IMAGENET_MEAN, IMAGENET_STD, Backbone, build_backbone, get_backbone
from viclab.models.resnet import ResNet18, ResNet50, resnet50
from viclab.models.small import Conv4, SmallCNN
from viclab.models.spectro import (
    DenseAutoencoder,
    SpecAutoencoder,
    SpecClassifier,
    SpecCNN,
    Standardize,
    fit_standardizers,
    spec_cnn,
    stack_frames,
)
from viclab.models.vicreg import SHIFTS, VICRegModel, build_model, build_vicreg_model
from viclab.models.vit import VisionTransformer, load_backbone_state_dict, vit_small, vit_tiny

if TYPE_CHECKING:
    from viclab.data.types import ImageData


def input_modality(backbone: str) -> str:
    """What a backbone takes (:attr:`Backbone.modality`); ``image`` for a name that is not registered."""
    return BACKBONES[backbone].modality if backbone in BACKBONES else "image"


def check_inputs(backbone: str, data: ImageData) -> None:
    """Refuse ``data`` whose ``modality`` is not the backbone's: images for a spectrogram network, or the reverse."""
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


__all__ = ["BACKBONES", "IMAGENET_MEAN", "IMAGENET_STD", "SHIFTS", "Backbone", "Conv4", "ConvAutoencoder",
           "DenseAutoencoder", "ResNet18", "ResNet50", "SmallCNN", "SpecAutoencoder", "SpecCNN", "SpecClassifier",
           "Standardize", "VICRegModel", "VisionTransformer", "build_autoencoder", "build_backbone", "build_model",
           "build_projector", "build_vicreg_model",
           "check_inputs", "check_view_size", "fit_standardizers", "get_backbone", "input_modality",
           "load_backbone_state_dict", "resnet50", "spec_cnn", "stack_frames", "vit_small", "vit_tiny"]
