"""From a log-mel spectrogram back to a waveform: mel inversion, then Griffin-Lim (spec §4, §5).

Mel inversion finds the non-negative linear-frequency spectrogram whose mel projection is closest
to the given one (non-negative least squares, as ``librosa.feature.inverse.mel_to_stft``);
Griffin-Lim then finds a phase for it: the fast variant with momentum (Perraudin, Balazs and
Søndergaard 2013), librosa's defaults (32 iterations, momentum 0.99, random initial phase).
"""

from __future__ import annotations

import torch
from torch import Tensor

from viclab.config import ResynthConfig, SoundConfig
from viclab.signal.mel import LogMel, log_to_mel


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


def _istft(spec: Tensor, cfg: SoundConfig, window: Tensor, length: int | None) -> Tensor:
    return torch.istft(spec, cfg.n_fft, cfg.hop_length, window=window, center=True, length=length)


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
    window = torch.hann_window(cfg.n_fft, periodic=True, dtype=magnitude.dtype, device=magnitude.device)
    if init == "random":
        gen = torch.Generator(device=magnitude.device).manual_seed(seed)
        phase = torch.rand(magnitude.shape, generator=gen, device=magnitude.device, dtype=magnitude.dtype)
        angles = torch.polar(torch.ones_like(magnitude), 2 * torch.pi * phase)
    elif init == "zeros":
        angles = torch.ones_like(magnitude, dtype=torch.complex64 if magnitude.dtype == torch.float32
                                 else torch.complex128)
    else:
        raise ValueError(f"init={init!r}: use 'random' or 'zeros'")
    rebuilt = torch.zeros_like(angles)
    for _ in range(n_iter):
        previous = rebuilt
        wave = _istft(magnitude * angles, cfg, window, length)
        rebuilt = torch.stft(wave, cfg.n_fft, cfg.hop_length, window=window, center=True, pad_mode="constant",
                             return_complex=True)
        angles = rebuilt - (momentum / (1 + momentum)) * previous
        angles = angles / (angles.abs() + 1e-16)
    return _istft(magnitude * angles, cfg, window, length)


def logmel_to_wave(logmel: Tensor, cfg: SoundConfig, n_iter: int = ResynthConfig.n_iter,
                   momentum: float = ResynthConfig.momentum, seed: int = ResynthConfig.seed,
                   length: int | None = None) -> Tensor:
    """``(..., 1, n_mels, frames)`` or ``(..., n_mels, frames)`` log-mel -> ``(..., length)`` waveform:
    the log undone, the mel inverted (NNLS), the magnitude's phase found by Griffin-Lim."""
    x = logmel.squeeze(-3) if logmel.dim() >= 3 and logmel.shape[-3] == 1 else logmel
    filters = LogMel(cfg).filters.to(x.device, torch.float64)
    power = nnls_mel_inverse(log_to_mel(x.double(), cfg), filters)
    magnitude = power.pow(1.0 / cfg.power)
    return griffin_lim(magnitude, cfg, n_iter, momentum, "random", seed, length).float()


def spectral_convergence(reference: Tensor, estimate: Tensor) -> float:
    """``||S - S_hat||_F / ||S||_F`` of two magnitude spectrograms (0 = identical)."""
    return float(torch.linalg.vector_norm(reference - estimate) / torch.linalg.vector_norm(reference))


def log_spectral_distance(reference: Tensor, estimate: Tensor, eps: float = 1e-10) -> float:
    """Mean over frames of the RMS over frequencies of ``10 log10(S^2 / S_hat^2)``, in dB.

    Args:
        reference, estimate: ``(..., freqs, frames)`` magnitude spectrograms.
    """
    diff = 10 * (torch.log10(reference.pow(2) + eps) - torch.log10(estimate.pow(2) + eps))
    return float(diff.pow(2).mean(-2).sqrt().mean())


def magnitude(wave: Tensor, cfg: SoundConfig) -> Tensor:
    """``(..., L)`` -> ``(..., n_fft // 2 + 1, frames)`` STFT magnitude (Hann, centred)."""
    window = torch.hann_window(cfg.n_fft, periodic=True, dtype=wave.dtype, device=wave.device)
    return torch.stft(wave, cfg.n_fft, cfg.hop_length, window=window, center=True, pad_mode="constant",
                      return_complex=True).abs()
