"""Batched, seeded data augmentation that runs on the model's device."""

from viclab.augment.pipeline import Augment, ViewParams, apply_params, eval_transform, sample_params

__all__ = ["Augment", "ViewParams", "apply_params", "eval_transform", "sample_params"]
