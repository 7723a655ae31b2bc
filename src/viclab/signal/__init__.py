"""Signal processing for sound (spec §4): log-mel spectrograms and their inversion, in torch.

Beneath the data layer: :mod:`viclab.data` computes its sound datasets' features with it.
"""

from viclab.signal.griffinlim import (
    griffin_lim,
    log_spectral_distance,
    logmel_to_wave,
    magnitude,
    nnls_mel_inverse,
    spectral_convergence,
)
from viclab.signal.mel import LogMel, hz_to_mel, log_to_mel, logmel_batches, mel_filterbank, mel_to_hz

__all__ = ["LogMel", "griffin_lim", "hz_to_mel", "log_spectral_distance", "log_to_mel", "logmel_batches",
           "logmel_to_wave", "magnitude", "mel_filterbank", "mel_to_hz", "nnls_mel_inverse", "spectral_convergence"]
