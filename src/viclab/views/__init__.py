"""Batched, seeded data augmentation that runs on the model's device: image views (spec §2's T)
and log-mel spectrogram views (spec §4)."""

from viclab.config import Config
from viclab.views.images import Augment, ViewParams, apply_params, eval_transform, sample_params
from viclab.views.spectro import SpecViews


def view_maker(modality: str, cfg: Config) -> Augment | SpecViews:
    """The views of ``cfg`` for inputs of ``modality`` (:attr:`viclab.data.ImageData.modality`):
    :class:`Augment` (``cfg.augment``) for images, :class:`SpecViews` (``cfg.spec_views``) for log-mel
    spectrograms. Both have ``__call__(x, generator)`` and ``pair(x, generator)``."""
    return SpecViews(cfg.spec_views) if modality == "spectrogram" else Augment(cfg.augment)


__all__ = ["Augment", "SpecViews", "ViewParams", "apply_params", "eval_transform", "sample_params", "view_maker"]
