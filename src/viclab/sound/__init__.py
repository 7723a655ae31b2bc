"""Sound end to end (spec §4): resynthesis of log-mel spectrograms, and the sound benchmarks that the
study and ``benchmarks/sound.py`` share. Decoding and features live in :mod:`viclab.data` and
:mod:`viclab.audio`; the detectors, sound or image, in :mod:`viclab.detect`."""

from viclab.sound.resynth import reconstruct, resynthesise, unstack_frames

__all__ = ["reconstruct", "resynthesise", "unstack_frames"]
