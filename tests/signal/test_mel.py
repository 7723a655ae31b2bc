"""Log-mel spectrograms against librosa's (the DCASE 2020 baseline's feature extractor)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from viclab.config import SoundConfig
from viclab.signal import LogMel, hz_to_mel, log_to_mel, logmel_batches, mel_filterbank, mel_to_hz

librosa = pytest.importorskip("librosa")


@pytest.mark.parametrize("rate, n_fft, n_mels, fmin, fmax", [
    (16_000, 1024, 128, 0.0, None),  # the DCASE baseline's
    (8_000, 256, 64, 0.0, None),
    (44_100, 2048, 40, 300.0, 8000.0),
])
def test_filterbank_matches_librosa(rate, n_fft, n_mels, fmin, fmax):
    ours = mel_filterbank(rate, n_fft, n_mels, fmin, fmax).numpy()
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)  # htk=False, norm="slaney"
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-7)


def test_mel_scale_round_trip_and_slaney_breakpoint():
    hz = torch.tensor([0.0, 500.0, 1000.0, 4000.0, 8000.0], dtype=torch.float64)
    np.testing.assert_allclose(hz_to_mel(hz).numpy(), librosa.hz_to_mel(hz.numpy()), rtol=1e-10)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(hz)).numpy(), hz.numpy(), rtol=1e-10, atol=1e-9)
    assert float(hz_to_mel(torch.tensor(1000.0, dtype=torch.float64))) == pytest.approx(15.0)  # 1 kHz = 15 mel


@pytest.mark.parametrize("cfg", [SoundConfig(),
                                 SoundConfig(rate=8_000, n_fft=256, hop_length=64, n_mels=64, power=1.0)])
def test_logmel_matches_the_dcase_baseline_formula(cfg):
    """DCASE 2020 baseline: 20 / power * log10(librosa.feature.melspectrogram(...) + eps)."""
    rng = np.random.default_rng(0)
    n = cfg.rate // 2 + 123  # not a multiple of the hop
    t = np.arange(n) / cfg.rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=wave, sr=cfg.rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                                         n_mels=cfg.n_mels, power=cfg.power)
    ref = 20.0 / cfg.power * np.log10(mel + cfg.log_offset)
    ours = LogMel(cfg)(torch.from_numpy(wave)[None])
    assert ours.shape == (1, 1, cfg.n_mels, n // cfg.hop_length + 1) == (1, 1, *ref.shape)
    # float32 STFT against librosa's: equal to a hundredth of a dB where there is energy
    np.testing.assert_allclose(ours[0, 0].numpy(), ref, atol=0.01)
    np.testing.assert_allclose(log_to_mel(ours[0, 0], cfg).numpy(), mel, rtol=2e-3, atol=1e-6)


def test_batches_equal_one_at_a_time():
    cfg = SoundConfig(rate=8_000, n_fft=256, hop_length=64, n_mels=32)
    clips = torch.randn(5, 4000)
    batched = logmel_batches(clips, cfg, batch_size=2)
    alone = torch.cat([LogMel(cfg)(c[None]) for c in clips])
    torch.testing.assert_close(batched, alone)
    assert batched.shape == (5, 1, 32, 4000 // 64 + 1)
    assert SoundConfig(rate=8_000, hop_length=64, clip_seconds=0.5).frames == 4000 // 64 + 1
