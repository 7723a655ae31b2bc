"""The view distribution T as one batched, seeded call on the model's device."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from viclab.config import AugmentConfig
from viclab.data.types import unit_float
from viclab.views import ops

# Colour-jitter op indices, as in ViewParams.jitter's columns and jitter_order's values.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


@dataclass(frozen=True)
class ViewParams:
    """Per-image random parameters of one view; every field has leading dim ``B``.

    Attributes:
        boxes: ``(B, 4)`` crop (top, left, h, w) in input pixels.
        flip: ``(B,)`` bool, mirror horizontally.
        jitter: ``(B, 4)`` brightness, contrast, saturation factors and hue shift (1, 1, 1, 0 where not applied).
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


def sample_params(cfg: AugmentConfig, n: int, height: int, width: int,
                  generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> ViewParams:
    """Draw independent parameters for ``n`` images of size ``height x width``."""
    device = torch.device(device)
    boxes = ops.crop_boxes(n, height, width, cfg.crop_scale, cfg.crop_ratio, generator, device)
    coin = lambda p: torch.rand(n, generator=generator, device=device) < p  # noqa: E731
    flip = coin(cfg.hflip_p)
    # torchvision's ColorJitter ranges: [max(0, 1-s), 1+s] for factors, [-h, h] for hue.
    jitter = [ops.uniform(n, max(0.0, 1 - s), 1 + s, generator, device)
              for s in (cfg.brightness, cfg.contrast, cfg.saturation)]
    jitter.append(ops.uniform(n, -cfg.hue, cfg.hue, generator, device))
    on = coin(cfg.jitter_p)  # elsewhere the identity values 1, 1, 1, 0
    jitter = torch.stack([torch.where(on, v, 1.0 if i < HUE else 0.0) for i, v in enumerate(jitter)], 1)
    order = torch.rand(n, 4, generator=generator, device=device).argsort(1)
    gray = coin(cfg.grayscale_p)
    sigma = ops.uniform(n, cfg.blur_sigma[0], cfg.blur_sigma[1], generator, device)
    sigma = torch.where(coin(cfg.blur_p), sigma, torch.zeros_like(sigma))
    return ViewParams(boxes, flip, jitter, order, gray, sigma, solarize=coin(cfg.solarize_p))


def _color_jitter(x: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Each image's four colour ops in its own order, with fixed-shape batch ops only (nothing to sync).

    Brightness, contrast and saturation are one blend (:func:`ops.blend_towards`) whose target depends on the op,
    so a *slot* applies to every image the blend of the op it has at that place, with factor 1 (the identity)
    where the slot is not active: three slots before hue, hue once for all images, three slots after it.
    """
    is_hue = order == HUE
    hue_at = is_hue.to(torch.uint8).argmax(1)  # (B,) hue's place in the order
    # The three other ops in their order: a stable sort moves hue to the end.
    blends = order.gather(1, is_hue.to(torch.uint8).argsort(dim=1, stable=True))[:, :3]

    def slot(x: Tensor, j: int, active: Tensor) -> Tensor:
        op = blends[:, j]
        f = torch.where(active, factors.gather(1, op.unsqueeze(1)).squeeze(1), 1.0)
        gray = ops.grayscale(x)
        target = torch.where((op == CONTRAST).view(-1, 1, 1, 1), gray.mean(dim=(1, 2, 3), keepdim=True), gray)
        return ops.blend_towards(x, f, target * (op != BRIGHTNESS).view(-1, 1, 1, 1))

    for j in range(3):
        x = slot(x, j, j < hue_at)
    x = ops.adjust_hue(x, factors[:, HUE])
    for j in range(3):
        x = slot(x, j, j >= hue_at)
    return x


def apply_params(images: Tensor, p: ViewParams, cfg: AugmentConfig) -> Tensor:
    """Render views: ``(B, 3, H, W)`` uint8 -> ``(B, 3, size, size)`` normalised float.

    Fixed-shape tensor ops only: no ``nonzero``, boolean-mask indexing or ``.item()``, so on a GPU the whole call
    queues without waiting for the device (mean and std are device tensors made once per config and device).
    """
    x = images.float().div_(255)
    x = ops.resized_crop(x, p.boxes, p.flip, cfg.size)
    if cfg.jitter_p > 0:
        x = _color_jitter(x, p.jitter, p.jitter_order)
    if cfg.grayscale_p > 0:
        x = torch.where(p.gray.view(-1, 1, 1, 1), ops.grayscale(x).expand_as(x), x)
    if cfg.blur_p > 0:
        x = ops.gaussian_blur(x, p.blur_sigma, cfg.blur_kernel)
    if cfg.solarize_p > 0:
        x = ops.solarize(x, p.solarize)
    return ops.normalize(x, *mean_std(cfg, x.device))


class Augment:
    """Callable view generator of the distribution ``cfg``: ``Augment(cfg)(images, generator) -> view``.

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
        return apply_params(images, sample_params(self.cfg, b, h, w, generator, images.device), self.cfg)

    def views_numel(self, shape: tuple[int, ...]) -> int:
        """Values in the views of an input of ``shape`` ``(C, H, W)``: the pair and the small views."""
        return 3 * (2 * self.cfg.size ** 2 + self.cfg.local_crops * self.cfg.local_size ** 2)

    def pair(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Two independent views ``(v1, v2)`` of each image in one batched call, each ``(B, 3, cfg.size, cfg.size)``:
        rows ``i`` of both are views of image ``i``."""
        views = self(images.repeat(2, 1, 1, 1), generator)  # 2B images: half the kernel launches of two calls
        return views[:len(images)], views[len(images):]

    def views(self, images: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, ...]:
        """The pair, then with ``cfg.local_crops = m > 0`` the small views ``(m * B, 3, cfg.local_size,
        cfg.local_size)``: rows ``k * B + i`` are image ``i``'s ``k``-th small view (one batched call)."""
        pair = self.pair(images, generator)
        if self.cfg.local_crops == 0:
            return pair
        return (*pair, Augment(local_config(self.cfg))(images.repeat(self.cfg.local_crops, 1, 1, 1), generator))


@functools.lru_cache(maxsize=16)
def local_config(cfg: AugmentConfig) -> AugmentConfig:
    """The distribution of ``cfg``'s small views: T at ``local_size`` pixels from ``local_crop_scale`` of the image."""
    return dataclasses.replace(cfg, size=cfg.local_size, crop_scale=cfg.local_crop_scale, local_crops=0)


def eval_transform(images: Tensor, cfg: AugmentConfig, modality: str) -> Tensor:
    """The evaluation transform of rows of ``modality``: images are normalised only, ``(B, 3, H, W)`` uint8 ->
    float; log-mel spectrograms (dB) pass unchanged, since a spectrogram encoder standardises its inputs itself
    (:class:`viclab.models.spectro.Standardize`)."""
    if modality == "spectrogram":
        return images
    return ops.normalize(unit_float(images, modality), *mean_std(cfg, images.device))


@functools.lru_cache(maxsize=16)
def mean_std(cfg: AugmentConfig, device: torch.device) -> tuple[Tensor, Tensor]:
    """``cfg.mean`` and ``cfg.std`` as tensors on ``device``, made once (not a host copy per step)."""
    return torch.tensor(cfg.mean, device=device), torch.tensor(cfg.std, device=device)
