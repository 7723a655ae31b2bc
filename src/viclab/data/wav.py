"""Sound files to fixed-length mono clips at one rate.

Any file libsndfile reads (WAV of 8-, 16-, 24- or 32-bit integers or floats, FLAC, OGG/Vorbis),
of any rate, channel count and length: mixed to mono (the mean of the channels, or one channel),
resampled with soxr (high quality), then cut into clips (one per file, cropped or zero-padded at
the end, or sliding windows every hop, the last one padded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write

EXTENSIONS = {".wav", ".flac", ".ogg"}


def decode(path: str | Path, rate: int, channel: int = -1) -> np.ndarray:
    """One file as a mono float32 waveform at ``rate`` Hz.

    Args:
        path: a WAV, FLAC or OGG file.
        rate: the output sample rate.
        channel: ``-1`` mixes the channels (their mean); ``k >= 0`` keeps channel ``k``.

    Returns:
        ``(samples,)`` float32 in ``[-1, 1]`` (integer formats scaled by their full range).

    Raises:
        ViclabError: the file is not a sound libsndfile reads, holds no samples or non-finite ones (NaN,
            infinity), or lacks ``channel``.
    """
    import soundfile as sf
    import soxr

    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise ViclabError(f"cannot decode sound file {path} ({e}); remove or replace it") from None
    if data.shape[0] == 0:
        raise ViclabError(f"sound file {path} holds no samples; remove it")
    if not np.isfinite(data).all():
        # A float WAV can hold NaN or infinity; one such sample makes every statistic and score of it non-finite.
        bad = int((~np.isfinite(data)).any(axis=1).sum())
        raise ViclabError(f"sound file {path} holds {bad} non-finite sample(s) (NaN or infinity); remove or repair "
                          "it")
    if channel >= data.shape[1]:
        raise ViclabError(f"sound file {path} has {data.shape[1]} channel(s), so it has no channel {channel}; use "
                          f"sound.channel=-1 (the mean) or a channel below {data.shape[1]}")
    mono = data.mean(axis=1) if channel < 0 else data[:, channel]
    if source_rate != rate:
        mono = soxr.resample(mono, source_rate, rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def cut(wave: np.ndarray, clip: int, hop: int = 0) -> np.ndarray:
    """Fixed-length clips of a waveform.

    Args:
        wave: ``(samples,)``.
        clip: samples per clip.
        hop: ``0``: one clip, the first ``clip`` samples (zero-padded at the end if shorter);
            ``> 0``: windows starting every ``hop`` samples until one reaches the end (the last
            zero-padded), at least one.

    Returns:
        ``(clips, clip)`` float32.
    """
    if hop <= 0:
        starts = [0]
    else:
        # The last start is the first multiple of hop at or past len - clip: the end is never dropped.
        starts = list(range(0, max(1, len(wave) - clip + hop), hop))
    out = np.zeros((len(starts), clip), dtype=np.float32)
    for i, s in enumerate(starts):
        piece = wave[s:s + clip]
        out[i, :len(piece)] = piece
    return out


def write_wav(path: str | Path, wave: np.ndarray, rate: int) -> Path:
    """Write ``wave``, ``(samples,)`` float in [-1, 1] (clipped to the range), as a 16-bit PCM WAV file, atomically."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1, 1), rate, subtype="PCM_16", format="WAV")
    return atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))
