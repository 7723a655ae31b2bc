"""Reconstruction error of an autoencoder, per image and averaged, as pure functions.

Shapes: ``x`` and ``x_hat`` are ``(B, C, H, W)`` (any ``(B, ...)`` works) images and
their reconstructions. The per-image error is also the anomaly score.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _at_least_fp32(t: Tensor) -> Tensor:
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def reconstruction_errors(x: Tensor, x_hat: Tensor) -> Tensor:
    """Per-image mean squared error over all ``C*H*W`` entries, in at least fp32.

    Args:
        x: ``(B, C, H, W)`` input images.
        x_hat: ``(B, C, H, W)`` reconstructions.

    Returns:
        ``(B,)`` tensor of ``mean_{c,h,w} (x - x_hat)^2``, fp32 for fp16/bf16 inputs.

    Raises:
        ValueError: if the shapes differ (broadcasting would silently average the wrong pairs).
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    diff = _at_least_fp32(x) - _at_least_fp32(x_hat)
    return diff.pow(2).flatten(1).mean(dim=1)


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over the batch of :func:`reconstruction_errors`.

    Args:
        x: ``(B, C, H, W)`` input images.
        x_hat: ``(B, C, H, W)`` reconstructions.

    Returns:
        Scalar tensor.
    """
    return reconstruction_errors(x, x_hat).mean()
