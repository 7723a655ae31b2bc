"""Sound end to end (spec §4): resynthesis of log-mel spectrograms, and the sound protocols that the
study and ``benchmarks/sound.py`` share. Decoding and features live in :mod:`viclab.data` and
:mod:`viclab.audio`; the detectors, sound or image, in :mod:`viclab.detect`."""

from viclab.sound.resynth import reconstruct, resynthesise, unstack_frames
from viclab.sound.tasks import held_out_speaker, machine_id, machine_sounds, one_digit, probe_digits

__all__ = ["held_out_speaker", "machine_id", "machine_sounds", "one_digit", "probe_digits", "reconstruct",
           "resynthesise", "unstack_frames"]
