"""Batched, seeded data augmentation that runs on the model's device: image views (spec §2's T)
and log-mel spectrogram views (spec §4)."""

from torch import Tensor

from viclab.config import Config
from viclab.views.images import Augment, ViewParams, apply_params, eval_transform, sample_params
from viclab.views.spectro import SpecViews


def view_maker(inputs: Tensor, cfg: Config) -> Augment | SpecViews:
    """The views of ``cfg`` for these inputs: :class:`Augment` (``cfg.augment``) for uint8 images,
    :class:`SpecViews` (``cfg.spec_views``) for float log-mel spectrograms. Both have
    ``__call__(x, generator)`` and ``pair(x, generator)``."""
    return SpecViews(cfg.spec_views) if inputs.is_floating_point() else Augment(cfg.augment)


__all__ = ["Augment", "SpecViews", "ViewParams", "apply_params", "eval_transform", "sample_params", "view_maker"]
