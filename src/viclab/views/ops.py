"""Batched image operations with per-image parameters.

Images are float ``(B, C, H, W)`` in ``[0, 1]`` unless stated; every parameter tensor has a leading batch
dimension. The formulas follow torchvision's tensor transforms (colour ops, Gaussian kernel, crop sampling) so
recipes written for torchvision mean the same thing here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def uniform(n: int, lo: float, hi: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``(n,)`` independent draws from ``U[lo, hi)``."""
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def grayscale(x: Tensor) -> Tensor:
    """``(B, 3, H, W)`` -> ``(B, 1, H, W)`` luma (ITU-R 601-2, as torchvision's ``rgb_to_grayscale``)."""
    r, g, b = x.unbind(1)
    return (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def blend_towards(x: Tensor, factor: Tensor, target: Tensor | float) -> Tensor:
    """Brightness, contrast or saturation per image in one formula: ``clamp(f x + (1 - f) t, 0, 1)``.

    ``target`` broadcasts to ``x``: 0 for brightness, the mean luma ``(B, 1, 1, 1)`` for contrast, the luma image
    ``(B, 1, H, W)`` for saturation. ``factor = 1`` is exactly the identity, so a batch can apply each op to some
    of its images without indexing."""
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * target).clamp_(0, 1)


def adjust_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Rotate hue by ``shift`` ``(B,)`` in [-0.5, 0.5] (fraction of the colour wheel).

    Same result as RGB -> HSV, ``h = (h + shift) mod 1``, HSV -> RGB, without building the HSV image: value and
    chroma (max, max - min) are unchanged by a hue rotation, so each output channel is ``max - chroma *
    clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6h) mod 6`` and ``n = 5, 3, 1`` for R, G, B.
    """
    r, g, b = x.unbind(1)
    maxc = x.amax(1)  # amax/amin: ten times faster than max()/min() with indices
    chroma = maxc - x.amin(1)
    inv = 1.0 / chroma.clamp_min(1e-12)  # grey pixels: numerators are 0 anyway
    # Which channel is the max, as 0/1 floats (arithmetic beats torch.where here).
    # Ties give the same hue either way, so the order of preference does not matter.
    is_r = (r == maxc).to(x.dtype)
    is_g = (g == maxc).to(x.dtype) * (1 - is_r)
    is_b = 1 - is_r - is_g
    h6 = (is_r * (g - b) + is_g * (b - r) + is_b * (r - g)) * inv + 2 * is_g + 4 * is_b  # hue in sextants
    h6 += 6 * shift.view(-1, 1, 1)
    out = torch.empty_like(x)
    for c, n in enumerate((5.0, 3.0, 1.0)):
        k = torch.remainder(h6 + n, 6.0)
        torch.sub(maxc, chroma * torch.minimum(k, 4 - k).clamp_(0, 1), out=out[:, c])
    return out


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Separable Gaussian blur with per-image ``sigma`` ``(B,)``, reflect padding. ``sigma = 0`` gives the identity
    (a delta kernel), which lets a caller blur only some images of a batch without indexing."""
    r = kernel_size // 2
    if r == 0:
        return x
    offsets = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    s = sigma.to(x.dtype).view(-1, 1)
    w = torch.where(s > 0, torch.exp(-0.5 * (offsets / s.clamp_min(1e-12)) ** 2),
                    (offsets == 0).to(x.dtype).expand(s.shape[0], -1))
    w = (w / w.sum(1, keepdim=True)).view(-1, 1, 1, 1, kernel_size)
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    h, wd = x.shape[-2:]
    # Horizontal then vertical pass: a weighted sum of shifted copies.
    tmp = sum(w[..., k] * xp[..., :, k:k + wd] for k in range(kernel_size))
    return sum(w[..., k] * tmp[..., k:k + h, :] for k in range(kernel_size))


def solarize(x: Tensor, apply: Tensor, threshold: float = 0.5) -> Tensor:
    """Invert pixels ``>= threshold`` in the images where ``apply`` ``(B,)`` is true."""
    flip = apply.view(-1, 1, 1, 1) & (x >= threshold)
    return torch.where(flip, 1.0 - x, x)


def crop_boxes(n: int, height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
               generator: torch.Generator | None, device: torch.device, attempts: int = 10) -> Tensor:
    """Sample RandomResizedCrop boxes as torchvision does, for ``n`` images at once.

    Each image gets ``attempts`` candidate (area, log-aspect) draws; the first one that fits is used, else the
    central crop with the aspect clamped into ``ratio``.

    Returns:
        ``(n, 4)`` float tensor of ``(top, left, h, w)`` in pixels.
    """
    u = torch.rand(n, attempts, 4, generator=generator, device=device)
    target = height * width * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + (log_hi - log_lo) * u[..., 1])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = ok.float().argmax(1, keepdim=True)  # index of first True (0 if none)
    pick = lambda t: t.gather(1, first).squeeze(1)  # noqa: E731
    w, h, u_top, u_left = pick(w), pick(h), pick(u[..., 2]), pick(u[..., 3])
    top = torch.floor(u_top * (height - h + 1))
    left = torch.floor(u_left * (width - w + 1))
    # Fallback: whole image, aspect clamped into [ratio[0], ratio[1]], centred. Python numbers
    # merged with torch.where: a host-built tensor would be a host-to-device copy per call.
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    fits = ok.any(1)
    return torch.stack([torch.where(fits, v, float(f))
                        for v, f in zip((top, left, h, w), ((height - fh) // 2, (width - fw) // 2, fh, fw))], 1)


def resized_crop(x: Tensor, boxes: Tensor, flip: Tensor, size: int) -> Tensor:
    """Crop ``boxes`` ``(B, 4)`` = (top, left, h, w), resize to ``size``, mirror where ``flip``: one
    ``affine_grid``/``grid_sample`` call for the batch; bilinear, pixel centres aligned as
    ``interpolate(..., align_corners=False)``."""
    b, _, height, width = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)
    sx = w / width * torch.where(flip, -1.0, 1.0).to(x.dtype)
    sy = h / height
    tx = (2 * left + w) / width - 1
    ty = (2 * top + h) / height - 1
    zero = torch.zeros_like(sx)
    theta = torch.stack((torch.stack((sx, zero, tx), 1), torch.stack((zero, sy, ty), 1)), 1)
    grid = F.affine_grid(theta, [b, x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def normalize(x: Tensor, mean: tuple[float, ...] | Tensor, std: tuple[float, ...] | Tensor) -> Tensor:
    """Per-channel ``(x - mean) / std`` for ``(B, C, H, W)``; ``mean``/``std`` as numbers or
    ``(C,)`` tensors (pass tensors already on ``x``'s device in a hot loop: no host copy)."""
    m = torch.as_tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
