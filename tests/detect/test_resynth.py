"""Resynthesis: frames back from stacked windows, machine IDs from origins, the measures of resynth.json."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from viclab.config import SoundConfig
from viclab.core.context import QUIET
from viclab.core.errors import ViclabError
from viclab.data import ImageData
from viclab.detect.data import TestSet
from viclab.detect.protocols import machine_ids
from viclab.detect.resynth import resynthesise, unstack_frames
from viclab.models import stack_frames
from viclab.signal import LogMel, log_to_mel, logmel_to_wave, nnls_mel_inverse


def test_unstacking_stacked_windows_gives_the_frames_back():
    x = torch.randn(1, 1, 12, 30)
    windows = stack_frames(x, 5)[0]
    torch.testing.assert_close(unstack_frames(windows, 5, 12), x[0, 0])


def test_unstacking_averages_each_frame_over_its_windows():
    windows = torch.zeros(4, 3 * 2)  # 4 windows of 3 frames of 2 mels -> 6 frames
    windows[0] = 1.0  # frames 0, 1, 2 get a 1 from window 0 only
    out = unstack_frames(windows, 3, 2)
    # frame 0 is in window 0 alone; frame 1 in windows 0, 1; frame 2 in 0, 1, 2; frame 3 in 1, 2, 3
    torch.testing.assert_close(out[0], torch.tensor([1.0, 1 / 2, 1 / 3, 0.0, 0.0, 0.0]))


def test_machine_ids_are_the_ones_the_loader_read():
    data = ImageData(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.int64), ("normal", "anomalous"),
                     modality="spectrogram", attrs={"machine": np.array(["fan", "fan"]),
                                                    "machine_id": np.array(["id_04", "id_02"])})
    assert list(machine_ids(TestSet(data, np.array(["a", "b"])))) == ["id_04", "id_02"]
    with pytest.raises(ValueError, match="no machine ID"):
        bare = ImageData(data.images, data.labels, data.classes, modality="spectrogram")
        machine_ids(TestSet(bare, np.array(["a", "b"])))


FSDD_LIKE = dict(rate=8_000, clip_seconds=1.0, n_fft=256, hop_length=64, n_mels=64, log_offset=1e-8)


def _stft_magnitude(wave: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """librosa's STFT magnitude (Hann, centred frames, zero padding) in float64."""
    return np.abs(librosa.stft(wave.astype(np.float64), n_fft=n_fft, hop_length=hop, window="hann", center=True,
                               pad_mode="constant"))


def _sc_lsd(reference: np.ndarray, estimate: np.ndarray) -> tuple[float, float]:
    """Spectral convergence and log-spectral distance (dB), from their definitions in NumPy."""
    sc = np.linalg.norm(reference - estimate) / np.linalg.norm(reference)
    eps = 1e-10  # the floor of both powers, as viclab.signal.log_spectral_distance documents
    diff = 10 * np.log10((reference ** 2 + eps) / (estimate ** 2 + eps))
    return float(sc), float(np.sqrt((diff ** 2).mean(axis=0)).mean())


def test_resynthesis_measures_griffin_lim_without_the_anti_clipping_gain(tmp_path):
    """A square wave at 0.9 comes back from a random phase with peaks far above full scale, so
    resynth.wav is scaled down; the measures must be those of Griffin-Lim's own output, computed
    here with librosa and NumPy (the gain alone would add spectral error: 1 - gain of it)."""
    cfg = SoundConfig(**FSDD_LIKE)
    t = np.arange(4000) / cfg.rate
    wave = (0.9 * np.sign(np.sin(2 * np.pi * 220 * t))).astype(np.float32)
    clip = tmp_path / "square.wav"
    sf.write(str(clip), wave, cfg.rate, subtype="FLOAT")
    result = resynthesise(clip, tmp_path / "out", sound=cfg, ctx=QUIET)
    y = logmel_to_wave(LogMel(cfg)(torch.from_numpy(wave)[None]), cfg, length=len(wave))[0].numpy()
    assert np.abs(y).max() > 1.5 and result["scaled_by"] == pytest.approx(0.99 / np.abs(y).max())
    sc, lsd = _sc_lsd(_stft_magnitude(wave, cfg.n_fft, cfg.hop_length), _stft_magnitude(y, cfg.n_fft, cfg.hop_length))
    assert result["vs_original"]["spectral_convergence"] == pytest.approx(sc, rel=1e-6)
    assert result["vs_original"]["log_spectral_distance_db"] == pytest.approx(lsd, rel=1e-6)
    # the magnitude Griffin-Lim was given: the NNLS mel inversion (tested against librosa elsewhere)
    power = nnls_mel_inverse(log_to_mel(LogMel(cfg)(torch.from_numpy(wave)[None])[0, 0].double(), cfg),
                             LogMel(cfg).filters.double())
    sc, lsd = _sc_lsd(power.sqrt().numpy(), _stft_magnitude(y, cfg.n_fft, cfg.hop_length))
    assert result["vs_given_magnitude"]["spectral_convergence"] == pytest.approx(sc, rel=1e-6)
    assert result["vs_given_magnitude"]["log_spectral_distance_db"] == pytest.approx(lsd, rel=1e-6)
    # the WAV holds the scaled wave (16-bit: within a quantisation step)
    written, _ = sf.read(str(tmp_path / "out" / "resynth.wav"), dtype="float32")
    np.testing.assert_allclose(written, y * result["scaled_by"], atol=2 / 2**15)


def test_a_measure_that_is_not_finite_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    """resynth.json is strict JSON: never a bare NaN (which json.dumps writes by default)."""
    clip = tmp_path / "tone.wav"
    sf.write(str(clip), (0.3 * np.sin(np.arange(8000) * 0.2)).astype(np.float32), 8000, subtype="PCM_16")
    monkeypatch.setattr("viclab.detect.resynth.spectral_convergence", lambda a, b: float("nan"))
    with pytest.raises(ViclabError, match="not a finite number"):
        resynthesise(clip, tmp_path / "out", sound=SoundConfig(**FSDD_LIKE), ctx=QUIET)
    assert not (tmp_path / "out").exists()
