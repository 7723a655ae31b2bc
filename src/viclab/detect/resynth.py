"""``viclab sound resynth``: a clip's log-mel spectrogram, or an autoencoder's reconstruction of it,
back to a waveform (spec §4, §5: mel inversion then Griffin-Lim)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from viclab.config import ResynthConfig, SoundConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write_text, check_writable_dir
from viclab.data.sounds import cut, decode, write_wav
from viclab.detect import Detector, load_detector
from viclab.detect.detectors import channels_last
from viclab.models import ConvAutoencoder, stack_frames
from viclab.plot.figures import spectrogram_panels_png
from viclab.signal import (
    LogMel,
    log_spectral_distance,
    log_to_mel,
    logmel_to_wave,
    magnitude,
    nnls_mel_inverse,
    spectral_convergence,
)


def unstack_frames(vectors: Tensor, context: int, n_mels: int) -> Tensor:
    """``(W, context * n_mels)`` stacked windows (:func:`viclab.models.stack_frames`) back to ``(n_mels,
    W + context - 1)`` frames, each the mean of its estimates in the windows that hold it."""
    w = vectors.shape[0]
    frames = vectors.view(w, context, n_mels)
    total = torch.zeros(w + context - 1, n_mels, dtype=vectors.dtype)
    count = torch.zeros(w + context - 1, 1, dtype=vectors.dtype)
    for c in range(context):
        total[c:c + w] += frames[:, c]
        count[c:c + w] += 1
    return (total / count).T


@torch.no_grad()
def reconstruct(det: Detector, logmel: Tensor) -> Tensor:
    """An autoencoder or dcase_ae detector's output for ``(1, 1, n_mels, frames)`` log-mel (dB), same shape."""
    x = logmel.to(det.rt.device)
    if det.network_kind == "autoencoder":
        return det.network(channels_last(x)).float().cpu().contiguous()
    context = det.cfg.dcase.context
    out = det.network(stack_frames(x, context)[0]).float().cpu()
    return unstack_frames(out, context, x.shape[2])[None, None]


def _check_clip(wave: np.ndarray, clip: str | Path, cfg: SoundConfig, max_seconds: float) -> None:
    """Refuse, before anything is written, a clip that has nothing to resynthesise or would take too long."""
    seconds = len(wave) / cfg.rate
    if len(wave) < cfg.n_fft:  # fewer samples than one analysis window: a frame or two of mostly padding
        raise ViclabError(f"{clip} holds {len(wave)} sample(s) at {cfg.rate} Hz, fewer than one analysis window; "
                          f"resynthesis needs at least sound.n_fft = {cfg.n_fft} samples "
                          f"({cfg.n_fft / cfg.rate:g} s): give a longer clip")
    if seconds > max_seconds:
        raise ViclabError(f"{clip} lasts {seconds:.1f} s, longer than --max-seconds {max_seconds:g} (about a "
                          "second of work per second of audio); cut the clip, or raise --max-seconds")
    if not wave.any():  # spectral convergence divides by the original's magnitude
        raise ViclabError(f"{clip} is silent (every sample is 0); give a clip with sound in it")


def _detector(folder: str | Path) -> Detector:
    """The reconstruction detector of ``folder``, refused unless it was fitted on sound."""
    det, _ = load_detector(folder)
    if det.network_kind not in ("autoencoder", "dcase"):
        raise ViclabError(f"{folder} is a {det.cfg.detector} detector, which does not reconstruct its input; give "
                          "an autoencoder or dcase_ae detector folder, or none")
    if isinstance(det.network, ConvAutoencoder):
        raise ViclabError(f"{folder} was fitted on images; give a detector fitted on sound")
    return det


def _measures(wave: np.ndarray, y: np.ndarray, target: Tensor, frontend: LogMel, cfg: SoundConfig) -> dict[str, Any]:
    """Spectral convergence and log-spectral distance of ``y``'s STFT magnitude against the original
    ``wave``'s and against the magnitude Griffin-Lim was given (the mel inverse of ``target``)."""
    original_mag = magnitude(torch.from_numpy(wave).double(), cfg)
    result_mag = magnitude(torch.from_numpy(y).double(), cfg)
    given = nnls_mel_inverse(log_to_mel(target[0, 0].double(), cfg), frontend.filters.double()).pow(1 / cfg.power)
    return {name: {"spectral_convergence": spectral_convergence(ref, result_mag),
                   "log_spectral_distance_db": log_spectral_distance(ref, result_mag)}
            for name, ref in (("vs_original", original_mag), ("vs_given_magnitude", given))}


def resynthesise(clip: str | Path, out: str | Path, detector: str | Path | None = None,
                 sound: SoundConfig | None = None, n_iter: int = ResynthConfig.n_iter,
                 momentum: float = ResynthConfig.momentum, seed: int = ResynthConfig.seed,
                 max_seconds: float = ResynthConfig.max_seconds, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Turn a clip's log-mel spectrogram (or a detector's reconstruction of it) back into sound.

    Without ``detector``, the clip at ``sound``'s rate and features (default: the DCASE settings); with one, the
    clip as the detector sees it (its ``sound`` settings, its clip length) and its reconstruction. Writes into
    ``out``: ``original.wav`` (the analysed clip at the analysis rate), ``resynth.wav``, ``spectrograms.png``
    (original, reconstruction if any, and the resynthesised audio's log-mel side by side) and ``resynth.json``
    (:func:`_measures` of Griffin-Lim's output itself: a wave louder than full scale is scaled down, ``scaled_by``,
    only in ``resynth.wav``). Clips shorter than ``n_fft`` samples, silent, or longer than ``max_seconds`` are
    refused before anything is written.

    Returns:
        The contents of ``resynth.json``.
    """
    if n_iter < 1 or not 0 <= momentum < 1:
        raise ViclabError(f"--iters {n_iter} and --momentum {momentum}: use at least 1 iteration and a momentum in "
                          "[0, 1)")
    if not max_seconds > 0:
        raise ViclabError(f"--max-seconds {max_seconds} must be > 0; give the longest clip to accept, in seconds")
    out = check_writable_dir(Path(out), "output folder")
    det = _detector(detector) if detector is not None else None
    cfg = det.cfg.recipe.sound if det is not None else sound or SoundConfig()  # the clip as the detector sees it
    wave = decode(clip, cfg.rate, cfg.channel)
    if det is not None:
        wave = cut(wave, cfg.clip_samples)[0]
    _check_clip(wave, clip, cfg, max_seconds)
    frontend = LogMel(cfg)
    logmel = frontend(torch.from_numpy(wave)[None])
    target = reconstruct(det, logmel) if det is not None else logmel
    y = logmel_to_wave(target, cfg, n_iter, momentum, seed, length=len(wave))[0].numpy()
    peak = float(np.abs(y).max())
    # A reconstruction can be louder than full scale: the WAV is scaled down, not clipped. The measures
    # are the phase search's own, without that gain (a gain < 1 would count as spectral error).
    gain = 0.99 / peak if peak > 1 else 1.0
    result = {"clip": str(clip), "detector": str(detector) if detector else None, "rate": cfg.rate,
              "seconds": len(wave) / cfg.rate, "iterations": n_iter, "momentum": momentum, "seed": seed,
              "scaled_by": gain, **_measures(wave, y, target, frontend, cfg)}
    try:  # strict JSON (no bare NaN or Infinity), refused before anything is written
        text = json.dumps(result, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise ViclabError(f"resynthesising {clip} gave a measure that is not a finite number "
                          f"({result['vs_original']}, {result['vs_given_magnitude']}): the magnitude Griffin-Lim "
                          "was given is silent; give another clip or detector") from None
    write_wav(out / "original.wav", wave, cfg.rate)
    write_wav(out / "resynth.wav", y * gain, cfg.rate)
    panels = [("original", logmel[0])] + ([(f"{det.cfg.detector} reconstruction", target[0])] if det else [])
    panels.append(("resynthesised audio", frontend(torch.from_numpy(y.astype(np.float32))[None])[0]))
    spectrogram_panels_png(panels, logmel.shape[-1] * cfg.hop_length / cfg.rate, cfg.n_mels,
                           f"{Path(clip).name}: log-mel spectrograms (Griffin-Lim, {n_iter} iterations)",
                           out / "spectrograms.png")
    atomic_write_text(out / "resynth.json", text)
    v = result["vs_original"]
    ctx.echo(f"{Path(clip).name}: spectral convergence {v['spectral_convergence']:.3f}, log-spectral distance "
             f"{v['log_spectral_distance_db']:.2f} dB against the original -> {out / 'resynth.wav'}")
    return result
