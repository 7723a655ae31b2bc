"""Log-mel spectrograms in torch, batched on any device (spec §4).

The filterbank is Slaney's (librosa's default, ``htk=False, norm="slaney"``): mel is linear below
1 kHz and logarithmic above, each triangle scaled to unit area so that white noise has a flat mel
spectrum. Frames are centred (the signal zero-padded by ``n_fft // 2`` at both ends) under a
periodic Hann window, as ``librosa.feature.melspectrogram`` and the DCASE 2020 baseline compute
them; the log is the baseline's ``(20 / power) * log10(mel + offset)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from viclab.config import SoundConfig

_F_SP = 200.0 / 3  # Slaney: 66.67 Hz per mel below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = math.log(6.4) / 27.0


def hz_to_mel(hz: Tensor) -> Tensor:
    """Slaney's mel scale (float64 tensors)."""
    return torch.where(hz >= _MIN_LOG_HZ, _MIN_LOG_MEL + torch.log(hz.clamp_min(1e-10) / _MIN_LOG_HZ) / _LOG_STEP,
                       hz / _F_SP)


def mel_to_hz(mel: Tensor) -> Tensor:
    """Inverse of :func:`hz_to_mel`."""
    return torch.where(mel >= _MIN_LOG_MEL, _MIN_LOG_HZ * torch.exp(_LOG_STEP * (mel - _MIN_LOG_MEL)), _F_SP * mel)


def mel_filterbank(rate: int, n_fft: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> Tensor:
    """Slaney-normalised triangular mel filters.

    Args:
        rate: sample rate in Hz.
        n_fft: FFT size; the filters cover its ``n_fft // 2 + 1`` bins.
        n_mels: number of filters.
        fmin, fmax: the lowest and highest frequency covered (``fmax`` ``None`` or 0: ``rate / 2``).

    Returns:
        ``(n_mels, n_fft // 2 + 1)`` float32 weights.
    """
    fmax = fmax or rate / 2
    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(torch.tensor(float(fmin), dtype=torch.float64))),
                                     float(hz_to_mel(torch.tensor(float(fmax), dtype=torch.float64))),
                                     n_mels + 2, dtype=torch.float64))
    widths = edges.diff()
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # unit area per triangle
    return weights.float()


class LogMel(nn.Module):
    """``(B, L)`` waveforms -> ``(B, 1, n_mels, L // hop + 1)`` log-mel spectrograms.

    Args:
        cfg: the sound config (rate, n_fft, hop_length, n_mels, fmin, fmax, power, log_offset).
    """

    def __init__(self, cfg: SoundConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("filters", mel_filterbank(cfg.rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax or None),
                             persistent=False)

    def spectrum(self, wave: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, n_fft // 2 + 1, frames)`` complex STFT (centred, zero-padded)."""
        return torch.stft(wave.float(), self.cfg.n_fft, self.cfg.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)

    def mel(self, wave: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, n_mels, frames)`` mel spectrogram of ``|STFT| ** power``."""
        return self.filters @ self.spectrum(wave).abs().pow(self.cfg.power)

    def forward(self, wave: Tensor) -> Tensor:
        return ((20.0 / self.cfg.power) * torch.log10(self.mel(wave) + self.cfg.log_offset)).unsqueeze(1)


def log_to_mel(logmel: Tensor, cfg: SoundConfig) -> Tensor:
    """Invert the log: ``(..., n_mels, frames)`` log-mel -> the mel spectrogram it came from."""
    return (torch.pow(10.0, logmel * (cfg.power / 20.0)) - cfg.log_offset).clamp_min(0)


@torch.no_grad()
def logmel_batches(clips: Tensor, cfg: SoundConfig, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> Tensor:
    """Log-mel spectrograms of ``(N, L)`` float clips, computed in batches on ``device``.

    Returns:
        ``(N, 1, n_mels, L // hop + 1)`` float32 on the CPU.
    """
    frontend = LogMel(cfg).to(device)
    out = [frontend(clips[i:i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 1, cfg.n_mels, clips.shape[-1] // cfg.hop_length + 1)
