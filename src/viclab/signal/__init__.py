"""Signal processing for sound (spec §4, §5), in torch: log-mel spectrograms batched on any device, and their
inversion. Beneath the data layer: :mod:`viclab.data` computes its sound datasets' features with it.

The filterbank is Slaney's (librosa's default, ``htk=False, norm="slaney"``): mel is linear below
1 kHz and logarithmic above, each triangle scaled to unit area so that white noise has a flat mel
spectrum. Frames are centred (the signal zero-padded by ``n_fft // 2`` at both ends) under a
periodic Hann window, as ``librosa.feature.melspectrogram`` and the DCASE 2020 baseline compute
them; the log is the baseline's ``(20 / power) * log10(mel + offset)``.

Back to a waveform: mel inversion finds the non-negative linear-frequency spectrogram whose mel projection is
closest to the given one (non-negative least squares, as ``librosa.feature.inverse.mel_to_stft``); Griffin-Lim
then finds a phase for it: the fast variant with momentum (Perraudin, Balazs and Søndergaard 2013), librosa's
defaults (32 iterations, momentum 0.99, random initial phase).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from viclab.config import ResynthConfig, SoundConfig

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


def stft(wave: Tensor, cfg: SoundConfig, window: Tensor) -> Tensor:
    """``(..., L)`` -> ``(..., n_fft // 2 + 1, frames)`` complex STFT under ``window`` (centred, zero-padded)."""
    return torch.stft(wave, cfg.n_fft, cfg.hop_length, window=window, center=True, pad_mode="constant",
                      return_complex=True)


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
    bins = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, hi = hz_to_mel(torch.tensor([float(fmin), float(fmax or rate / 2)], dtype=torch.float64)).tolist()
    edges = mel_to_hz(torch.linspace(lo, hi, n_mels + 2, dtype=torch.float64))
    widths = edges.diff()
    ramps = edges[:, None] - bins[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0)
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]  # unit area per triangle
    return weights.float()


class LogMel(nn.Module):
    """``(B, L)`` waveforms -> ``(B, 1, n_mels, L // hop + 1)`` log-mel spectrograms, as ``cfg`` (the sound config:
    rate, n_fft, hop_length, n_mels, fmin, fmax, power, log_offset) says."""

    def __init__(self, cfg: SoundConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True), persistent=False)
        self.register_buffer("filters", mel_filterbank(cfg.rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax or None),
                             persistent=False)

    def mel(self, wave: Tensor) -> Tensor:
        """``(B, L)`` -> ``(B, n_mels, frames)`` mel spectrogram of ``|STFT| ** power``."""
        return self.filters @ stft(wave.float(), self.cfg, self.window).abs().pow(self.cfg.power)

    def forward(self, wave: Tensor) -> Tensor:
        return ((20.0 / self.cfg.power) * torch.log10(self.mel(wave) + self.cfg.log_offset)).unsqueeze(1)


def log_to_mel(logmel: Tensor, cfg: SoundConfig) -> Tensor:
    """Invert the log: ``(..., n_mels, frames)`` log-mel -> the mel spectrogram it came from."""
    return (torch.pow(10.0, logmel * (cfg.power / 20.0)) - cfg.log_offset).clamp_min(0)


@torch.no_grad()
def logmel_batches(clips: Tensor, cfg: SoundConfig, device: torch.device | str = "cpu",
                   batch_size: int = 256) -> Tensor:
    """Log-mel spectrograms of ``(N, L)`` float clips, computed in batches on ``device``: ``(N, 1, n_mels,
    L // hop + 1)`` float32 on the CPU."""
    frontend = LogMel(cfg).to(device)
    out = [frontend(clips[i:i + batch_size].to(device)).cpu() for i in range(0, len(clips), batch_size)]
    return torch.cat(out) if out else torch.empty(0, 1, cfg.n_mels, clips.shape[-1] // cfg.hop_length + 1)


def nnls_mel_inverse(mel: Tensor, filters: Tensor, iters: int = 200) -> Tensor:
    """``argmin_{S >= 0} ||filters @ S - mel||_F`` by accelerated projected gradient (FISTA).

    Args:
        mel: ``(..., n_mels, frames)`` mel spectrogram (non-negative).
        filters: ``(n_mels, n_freqs)`` filterbank.
        iters: gradient steps; the step is ``1 / ||filters||_2^2`` (the gradient's Lipschitz constant).

    Returns:
        ``(..., n_freqs, frames)`` non-negative.
    """
    f = filters.to(mel.dtype)
    gram, rhs = f.T @ f, f.T @ mel
    step = 1.0 / torch.linalg.matrix_norm(f, ord=2).pow(2)
    # Start from the least-norm solution, clipped to the feasible set.
    s = (torch.linalg.pinv(f) @ mel).clamp_min(0)
    y, t = s, 1.0
    for _ in range(iters):
        s_next = (y - step * (gram @ y - rhs)).clamp_min(0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = s_next + ((t - 1) / t_next) * (s_next - s)
        s, t = s_next, t_next
    return s


def griffin_lim(magnitude: Tensor, cfg: SoundConfig, n_iter: int = ResynthConfig.n_iter,
                momentum: float = ResynthConfig.momentum, init: str = "random", seed: int = ResynthConfig.seed,
                length: int | None = None) -> Tensor:
    """A waveform whose STFT magnitude approximates ``magnitude``.

    Args:
        magnitude: ``(..., n_fft // 2 + 1, frames)`` STFT magnitudes (not power).
        cfg: n_fft and hop_length of the STFT (Hann window, centred frames).
        n_iter: iterations.
        momentum: the fast Griffin-Lim's momentum (0: the original algorithm).
        init: ``"random"`` (uniform phase, seeded) or ``"zeros"`` (zero phase).
        length: samples of the output (default: what the frames cover).

    Returns:
        ``(..., length)`` float waveform.
    """
    if init not in ("random", "zeros"):
        raise ValueError(f"init={init!r}: use 'random' or 'zeros'")
    window = torch.hann_window(cfg.n_fft, periodic=True, dtype=magnitude.dtype, device=magnitude.device)
    phase = torch.zeros_like(magnitude)
    if init == "random":
        gen = torch.Generator(device=magnitude.device).manual_seed(seed)
        phase = torch.rand(magnitude.shape, generator=gen, device=magnitude.device, dtype=magnitude.dtype)
    angles = torch.polar(torch.ones_like(magnitude), 2 * torch.pi * phase)
    rebuilt = torch.zeros_like(angles)
    for _ in range(n_iter):
        previous = rebuilt
        wave = torch.istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window=window, length=length)
        rebuilt = stft(wave, cfg, window)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
    return torch.istft(magnitude * angles, cfg.n_fft, cfg.hop_length, window=window, length=length)


def logmel_to_wave(logmel: Tensor, cfg: SoundConfig, n_iter: int = ResynthConfig.n_iter,
                   momentum: float = ResynthConfig.momentum, seed: int = ResynthConfig.seed,
                   length: int | None = None) -> Tensor:
    """``(..., 1, n_mels, frames)`` or ``(..., n_mels, frames)`` log-mel -> ``(..., length)`` waveform:
    the log undone, the mel inverted (NNLS), the magnitude's phase found by Griffin-Lim."""
    x = logmel.squeeze(-3) if logmel.dim() >= 3 and logmel.shape[-3] == 1 else logmel
    filters = LogMel(cfg).filters.to(x.device, torch.float64)
    magnitude = nnls_mel_inverse(log_to_mel(x.double(), cfg), filters).pow(1.0 / cfg.power)
    return griffin_lim(magnitude, cfg, n_iter, momentum, "random", seed, length).float()


def spectral_convergence(reference: Tensor, estimate: Tensor) -> float:
    """``||S - S_hat||_F / ||S||_F`` of two magnitude spectrograms (0 = identical)."""
    return float(torch.linalg.vector_norm(reference - estimate) / torch.linalg.vector_norm(reference))


def log_spectral_distance(reference: Tensor, estimate: Tensor, eps: float = 1e-10) -> float:
    """Mean over frames of the RMS over frequencies of ``10 log10(S^2 / S_hat^2)``, in dB, of two
    ``(..., freqs, frames)`` magnitude spectrograms."""
    diff = 10 * (torch.log10(reference.pow(2) + eps) - torch.log10(estimate.pow(2) + eps))
    return float(diff.pow(2).mean(-2).sqrt().mean())


def magnitude(wave: Tensor, cfg: SoundConfig) -> Tensor:
    """``(..., L)`` -> ``(..., n_fft // 2 + 1, frames)`` STFT magnitude (Hann, centred)."""
    return stft(wave, cfg, torch.hann_window(cfg.n_fft, periodic=True, dtype=wave.dtype, device=wave.device)).abs()
