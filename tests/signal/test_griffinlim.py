"""Mel inversion and Griffin-Lim: against librosa, against the least-squares optimum, and converging."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.config import SoundConfig
from viclab.signal import (
    LogMel,
    griffin_lim,
    log_spectral_distance,
    logmel_to_wave,
    magnitude,
    nnls_mel_inverse,
    spectral_convergence,
)

CFG = SoundConfig(rate=8_000, n_fft=256, hop_length=64, n_mels=32)


def _chirp(n: int = 8_000, seed: int = 0) -> torch.Tensor:
    t = np.arange(n) / CFG.rate
    rng = np.random.default_rng(seed)
    wave = np.sin(2 * np.pi * (200 + 900 * t) * t) * np.hanning(n) + 0.01 * rng.standard_normal(n)
    return torch.from_numpy(wave.astype(np.float64))


def test_spectral_convergence_falls_with_iterations():
    wave = _chirp()
    target = magnitude(wave, CFG)
    sc = [spectral_convergence(target, magnitude(griffin_lim(target, CFG, n_iter=n, seed=1, length=len(wave)), CFG))
          for n in (1, 4, 16, 32, 64)]
    assert all(b < a for a, b in zip(sc, sc[1:])), sc
    assert sc[-1] < 0.5 * sc[0]


def test_momentum_converges_faster_than_the_original_algorithm():
    wave = _chirp()
    target = magnitude(wave, CFG)
    fast, plain = (spectral_convergence(target, magnitude(griffin_lim(target, CFG, 32, m, seed=2, length=len(wave)),
                                                          CFG)) for m in (0.99, 0.0))
    assert fast < plain


def test_griffin_lim_matches_librosa_from_zero_phase():
    librosa = pytest.importorskip("librosa")
    wave = _chirp()
    target = magnitude(wave, CFG)
    ours = griffin_lim(target, CFG, n_iter=32, momentum=0.99, init="zeros", length=len(wave)).numpy()
    ref = librosa.griffinlim(target.numpy(), n_iter=32, hop_length=CFG.hop_length, n_fft=CFG.n_fft, momentum=0.99,
                             init=None, length=len(wave))
    np.testing.assert_allclose(ours, ref, atol=1e-6 * np.abs(ref).max() * 100)


def test_nnls_inverse_is_feasible_and_at_least_as_good_as_the_clipped_pseudo_inverse():
    filters = LogMel(CFG).filters.double()
    spec = magnitude(_chirp(), CFG).pow(2)
    mel = filters @ spec
    s = nnls_mel_inverse(mel, filters, iters=300)
    assert s.min() >= 0
    clipped = (torch.linalg.pinv(filters) @ mel).clamp_min(0)
    residual = lambda x: float(torch.linalg.vector_norm(filters @ x - mel))  # noqa: E731
    assert residual(s) <= residual(clipped)
    assert residual(s) < 1e-2 * float(torch.linalg.vector_norm(mel))
    # The KKT conditions of non-negative least squares: the gradient is >= 0 where s = 0, ~0 where s > 0.
    grad = filters.T @ (filters @ s - mel)
    scale = float(grad.abs().max()) + float((filters.T @ mel).abs().max())
    assert float(grad[s == 0].min()) > -1e-3 * scale


def test_logmel_round_trip_recovers_the_spectrum():
    wave = _chirp()
    logmel = LogMel(CFG)(wave.float()[None])
    back = logmel_to_wave(logmel, CFG, seed=0, length=len(wave))[0].double()
    original, rebuilt = magnitude(wave, CFG), magnitude(back, CFG)
    assert spectral_convergence(original, rebuilt) < 0.6
    assert log_spectral_distance(original, rebuilt) < 15
    # and the mel spectrogram it makes is close to the one it came from (within a few dB where there is energy)
    again = LogMel(CFG)(back.float()[None])
    loud = logmel > logmel.max() - 40
    assert float((again - logmel)[loud].abs().median()) < 3.0


def test_distances_by_hand():
    a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert spectral_convergence(a, a) == 0 and log_spectral_distance(a, a) == 0
    b = a * 10  # 20 dB louder everywhere
    assert log_spectral_distance(a, b) == pytest.approx(20.0, rel=1e-6)
    assert spectral_convergence(a, 2 * a) == pytest.approx(1.0)
