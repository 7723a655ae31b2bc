"""Views of log-mel spectrograms for VICReg on sound (spec §4), batched on the device.

Every clip gets its own random parameters from the seeded generator; the ops are fixed-shape tensor arithmetic
(``torch.where``, ``gather``), with no host synchronisation, like the image views of :mod:`viclab.views.images`.
Spectrograms are in dB of power (``10 log10``, the default ``sound.power = 2``), so mixing adds ``10 ** (x / 10)``:
the mel power spectra of two uncorrelated sounds add.
"""

from __future__ import annotations

import torch
from torch import Tensor

from viclab.config import SpecViewsConfig
from viclab.views.ops import uniform


def time_crop(x: Tensor, frames: int, gen: torch.Generator | None) -> Tensor:
    """A random window of ``frames`` frames of each ``(B, C, M, T)`` spectrogram (independent starts)."""
    b, c, m, t = x.shape
    start = (torch.rand(b, generator=gen, device=x.device) * (t - frames + 1)).long().clamp_max(t - frames)
    idx = (start[:, None] + torch.arange(frames, device=x.device)).view(b, 1, 1, frames).expand(b, c, m, frames)
    return x.gather(3, idx)


def freq_shift(x: Tensor, max_bins: int, gen: torch.Generator | None) -> Tensor:
    """Each ``(B, C, M, T)`` spectrogram moved up or down by ``-max_bins .. max_bins`` mel bands (its own
    draw), the edge band repeated: a crude vocal-tract-length or pitch change."""
    b, c, m, t = x.shape
    shift = (torch.rand(b, generator=gen, device=x.device) * (2 * max_bins + 1)).long() - max_bins
    src = (torch.arange(m, device=x.device)[None] - shift[:, None]).clamp(0, m - 1)  # (B, M)
    return x.gather(2, src.view(b, 1, m, 1).expand(b, c, m, t))


def mix_power(x: Tensor, other: Tensor, snr_db: Tensor, active: Tensor) -> Tensor:
    """Add ``other`` to ``x`` (both ``(B, C, M, T)`` in dB of power) where ``active`` ``(B,)``, scaled to ``snr_db``
    ``(B,)`` below ``x``'s mean power: ``10 log10(P_x + g P_other)`` with ``g = mean(P_x) / mean(P_other) *
    10 ** (-snr / 10)`` where active."""
    px, po = torch.pow(10.0, x / 10), torch.pow(10.0, other / 10)
    gain = px.mean((1, 2, 3)) / po.mean((1, 2, 3)).clamp_min(1e-30) * torch.pow(10.0, -snr_db / 10)
    gain = torch.where(active, gain, torch.zeros_like(gain))
    return 10 * torch.log10(px + gain.view(-1, 1, 1, 1) * po)


def band_masks(x: Tensor, count: int, max_width: int, dim: int, gen: torch.Generator | None) -> Tensor:
    """``count`` masks of width ``0 .. max_width`` at random positions along ``dim`` (2: mel, 3: time),
    filled with each spectrogram's mean."""
    if count == 0 or max_width == 0:
        return x
    b, size = x.shape[0], x.shape[dim]
    width = (torch.rand(b, count, generator=gen, device=x.device) * (max_width + 1)).long()
    start = (torch.rand(b, count, generator=gen, device=x.device) * (size - width + 1)).long()
    pos = torch.arange(size, device=x.device).view(1, 1, size)
    hit = ((pos >= start[..., None]) & (pos < (start + width)[..., None])).any(1)  # (B, size)
    shape = [b, 1, 1, 1]
    shape[dim] = size
    return torch.where(hit.view(shape), x.mean((1, 2, 3), keepdim=True), x)


class SpecViews:
    """Callable view generator of the distribution ``cfg`` over spectrograms: ``SpecViews(cfg)(x, generator) -> view``.

    Call args:
        x: ``(B, 1, n_mels, T)`` log-mel spectrograms (dB) on any device; the view is made there.
        generator: a ``torch.Generator`` on the same device.

    Returns:
        ``(B, 1, n_mels, round(cfg.crop * T))`` float32.
    """

    def __init__(self, cfg: SpecViewsConfig) -> None:
        self.cfg = cfg

    def frames(self, t: int) -> int:
        """Frames of a view of a ``t``-frame spectrogram."""
        return max(1, min(t, round(self.cfg.crop * t)))

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        c, b, dev = self.cfg, x.shape[0], x.device
        x = time_crop(x.float(), self.frames(x.shape[-1]), generator)
        if c.freq_shift > 0:
            x = freq_shift(x, c.freq_shift, generator)
        if c.noise_p > 0:
            # Noise of flat mel spectrum (white noise through Slaney-normalised filters): exponential
            # power per bin, the power of a complex Gaussian.
            exponential = torch.rand(x.shape, generator=generator, device=dev).neg_().log1p_().neg_()
            noise = 10 * torch.log10(exponential.clamp_min_(1e-12))
            active = torch.rand(b, generator=generator, device=dev) < c.noise_p
            x = mix_power(x, noise, uniform(b, *c.noise_snr_db, generator, dev), active)
        if c.mix_p > 0 and b > 1:
            active = torch.rand(b, generator=generator, device=dev) < c.mix_p
            x = mix_power(x, x.roll(1, 0), uniform(b, *c.mix_snr_db, generator, dev), active)
        if c.gain_db > 0:
            x = x + uniform(b, -c.gain_db, c.gain_db, generator, dev).view(-1, 1, 1, 1)
        x = band_masks(x, c.time_masks, int(c.time_mask * x.shape[3]), 3, generator)
        return band_masks(x, c.freq_masks, int(c.freq_mask * x.shape[2]), 2, generator)

    def views_numel(self, shape: tuple[int, ...]) -> int:
        """Values in the views (the pair) of a spectrogram of ``shape`` ``(C, n_mels, T)``."""
        c, m, t = shape
        return 2 * c * m * self.frames(t)

    def pair(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Two independent views of each spectrogram in one batched call; rows ``i`` are views of clip ``i``."""
        views = self(x.repeat(2, 1, 1, 1), generator)
        return views[:len(x)], views[len(x):]

    views = pair  # no small views of spectrograms: a step's views are the pair
