"""Reconstruction error of an autoencoder (any ``(B, ...)`` inputs), per image (the anomaly score) and averaged."""

from __future__ import annotations

from torch import Tensor

from viclab.losses.vicreg import at_least_fp32


def reconstruction_errors(x: Tensor, x_hat: Tensor) -> Tensor:
    """``(B,)`` per-image mean squared errors ``mean_{c,h,w} (x - x_hat)^2`` of ``(B, C, H, W)`` images ``x`` and
    reconstructions ``x_hat``, in fp32 for fp16/bf16 inputs.

    Raises:
        ValueError: if the shapes differ (broadcasting would silently average the wrong pairs).
    """
    if x.shape != x_hat.shape:
        raise ValueError(f"x and x_hat must have the same shape, got {tuple(x.shape)} and {tuple(x_hat.shape)}")
    diff = at_least_fp32(x) - at_least_fp32(x_hat)
    return diff.pow(2).flatten(1).mean(dim=1)


def reconstruction_loss(x: Tensor, x_hat: Tensor) -> Tensor:
    """Mean over the batch of :func:`reconstruction_errors` of ``(B, C, H, W)`` images: a scalar tensor."""
    return reconstruction_errors(x, x_hat).mean()
