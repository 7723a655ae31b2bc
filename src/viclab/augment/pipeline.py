"""The view distribution T as one batched, seeded call on the model's device."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from viclab.augment import ops
from viclab.config import AugmentConfig

_JITTER_OPS = (ops.adjust_brightness, ops.adjust_contrast, ops.adjust_saturation, ops.adjust_hue)


@dataclass(frozen=True)
class ViewParams:
    """Per-image random parameters of one view; every field has leading dim ``B``.

    Attributes:
        boxes: ``(B, 4)`` crop (top, left, h, w) in input pixels.
        flip: ``(B,)`` bool, mirror horizontally.
        jitter: ``(B, 4)`` brightness, contrast, saturation factors and hue shift
            (identity values 1, 1, 1, 0 where jitter is not applied).
        jitter_order: ``(B, 4)`` a permutation of 0..3 per image (op order).
        gray: ``(B,)`` bool, convert to grayscale.
        blur_sigma: ``(B,)`` Gaussian sigma, 0 where no blur.
        solarize: ``(B,)`` bool.
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    jitter_order: Tensor
    gray: Tensor
    blur_sigma: Tensor
    solarize: Tensor


def _uniform(n: int, lo: float, hi: float, g: torch.Generator | None, device: torch.device) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=device)


def sample_params(cfg: AugmentConfig, n: int, height: int, width: int,
                  generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> ViewParams:
    """Draw independent parameters for ``n`` images of size ``height x width``."""
    device = torch.device(device)
    boxes = ops.crop_boxes(n, height, width, cfg.crop_scale, cfg.crop_ratio, generator, device)
    coin = lambda p: torch.rand(n, generator=generator, device=device) < p  # noqa: E731
    flip = coin(cfg.hflip_p)
    # torchvision's ColorJitter ranges: [max(0, 1-s), 1+s] for factors, [-h, h] for hue.
    jitter = torch.stack([
        _uniform(n, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness, generator, device),
        _uniform(n, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast, generator, device),
        _uniform(n, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation, generator, device),
        _uniform(n, -cfg.hue, cfg.hue, generator, device),
    ], 1)
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0], device=device)
    jitter = torch.where(coin(cfg.jitter_p).unsqueeze(1), jitter, identity)
    order = torch.rand(n, 4, generator=generator, device=device).argsort(1)
    gray = coin(cfg.grayscale_p)
    sigma = _uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], generator, device)
    sigma = torch.where(coin(cfg.blur_p), sigma, torch.zeros_like(sigma))
    solarize = coin(cfg.solarize_p)
    return ViewParams(boxes, flip, jitter, order, gray, sigma, solarize)


def apply_params(images: Tensor, p: ViewParams, cfg: AugmentConfig) -> Tensor:
    """Render one view: ``(B, 3, H, W)`` uint8 -> ``(B, 3, size, size)`` normalised float."""
    x = images.float().div_(255)
    x = ops.resized_crop(x, p.boxes, p.flip, cfg.size)
    if cfg.jitter_p > 0:
        for pos in range(4):
            for op_index, op in enumerate(_JITTER_OPS):
                # Images whose pos-th op is this one: each image meets each op once.
                idx = (p.jitter_order[:, pos] == op_index).nonzero().squeeze(1)
                if idx.numel():
                    x[idx] = op(x[idx], p.jitter[idx, op_index])
    if cfg.grayscale_p > 0:
        x = torch.where(p.gray.view(-1, 1, 1, 1), ops.grayscale(x).expand_as(x), x)
    if cfg.blur_p > 0:
        x = ops.gaussian_blur(x, p.blur_sigma, cfg.blur_kernel)
    if cfg.solarize_p > 0:
        x = ops.solarize(x, p.solarize)
    return ops.normalize(x, cfg.mean, cfg.std)


class Augment:
    """Callable view generator: ``Augment(cfg)(images, generator) -> view``.

    Args:
        cfg: the view distribution.

    Call args:
        images: ``(B, 3, H, W)`` uint8 on any device; the view is made there.
        generator: a ``torch.Generator`` on the same device, for reproducibility.

    Returns:
        ``(B, 3, cfg.size, cfg.size)`` float32 normalised view.
    """

    def __init__(self, cfg: AugmentConfig) -> None:
        self.cfg = cfg

    def __call__(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        b, _, h, w = images.shape
        params = sample_params(self.cfg, b, h, w, generator, images.device)
        return apply_params(images, params, self.cfg)


def eval_transform(images: Tensor, cfg: AugmentConfig) -> Tensor:
    """The evaluation transform: normalise only. ``(B, 3, H, W)`` uint8 -> float."""
    return ops.normalize(images.float().div_(255), cfg.mean, cfg.std)
