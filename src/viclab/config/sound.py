"""Sound: decoding and log-mel features, spectrogram views, and Griffin-Lim resynthesis settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from viclab.config.checks import check, finite, interval, prob

SOUND_SPLITS = ("index", "speaker")


@dataclass(frozen=True)
class SoundConfig:
    """Sound clips and their log-mel spectrograms (spec §4).

    Decoding: any WAV/FLAC/OGG file is mixed to mono (the mean of its channels, or ``channel``),
    resampled to ``rate`` and cut into clips of ``clip_seconds``: one per file (cropped, or
    zero-padded at the end), or with ``window_hop_seconds > 0`` sliding windows every hop (the
    last one padded). Features: ``(20 / power) * log10(mel + log_offset)`` of the ``power``
    spectrogram (Hann window, centred frames) through a Slaney mel filterbank. The defaults are
    the DCASE 2020 Task 2 baseline's: 16 kHz, n_fft 1024, hop 512, 128 mels, 10 log10.
    """

    rate: int = 16_000
    channel: int = -1  # -1: the mean of all channels; k >= 0: channel k
    clip_seconds: float = 10.0
    window_hop_seconds: float = 0.0  # > 0: sliding windows of clip_seconds every hop seconds
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 0.0  # 0: rate / 2
    power: float = 2.0
    log_offset: float = 2.220446049250313e-16  # the DCASE baseline's sys.float_info.epsilon
    # FSDD's test clips: "index" (its own split: recordings 0-4 of each speaker and digit) or "speaker"
    # (the test_speakers' clips).
    split: str = "index"
    test_speakers: tuple[str, ...] = ("theo",)
    # MIMII's test clips (it has no split): a seeded test_share of each machine ID's normal files, and
    # every abnormal file.
    test_share: float = 0.5
    label: str = "class"  # FSDD: "class" (the digit) or "speaker"
    machines: tuple[str, ...] = ()  # MIMII/DCASE: machine types kept (() = all)
    machine_ids: tuple[str, ...] = ()  # MIMII/DCASE: machine IDs kept, e.g. id_00 (() = all)
    # MIMII/DCASE: at most this many files per machine ID and condition (a seeded choice; 0 = all), to keep
    # a budget whatever the size of the download.
    max_files: int = 0
    seed: int = 0  # MIMII's split and the max_files choice

    def __post_init__(self) -> None:
        finite(self, "sound.")
        check(self.rate > 0, f"sound.rate={self.rate} must be > 0")
        check(self.channel >= -1, f"sound.channel={self.channel} must be -1 (mean of channels) or a channel index")
        check(self.clip_seconds > 0, f"sound.clip_seconds={self.clip_seconds} must be > 0")
        check(self.window_hop_seconds >= 0, f"sound.window_hop_seconds={self.window_hop_seconds} must be >= 0")
        check(self.n_fft >= 2, f"sound.n_fft={self.n_fft} must be >= 2")
        check(self.hop_length >= 1, f"sound.hop_length={self.hop_length} must be >= 1")
        check(self.n_mels >= 1, f"sound.n_mels={self.n_mels} must be >= 1")
        nyquist = self.rate / 2
        check(0 <= self.fmin < (self.fmax or nyquist) <= nyquist,
               f"sound.fmin={self.fmin}, sound.fmax={self.fmax} must satisfy 0 <= fmin < fmax <= rate / 2 = "
               f"{nyquist:g} "
               "(fmax 0 means rate / 2)")
        check(self.power > 0, f"sound.power={self.power} must be > 0 (2: power, 1: magnitude)")
        check(self.log_offset > 0, f"sound.log_offset={self.log_offset} must be > 0")
        check(self.split in SOUND_SPLITS, f"sound.split={self.split!r} is unknown; use {', '.join(SOUND_SPLITS)}")
        check(0 < self.test_share < 1, f"sound.test_share={self.test_share} must be in (0, 1)")
        check(self.label in ("class", "speaker"), f"sound.label={self.label!r} is unknown; use class or speaker")
        check(self.max_files >= 0, f"sound.max_files={self.max_files} must be >= 0 (0 = all)")
        check(round(self.clip_seconds * self.rate) >= 1,
               f"sound.clip_seconds={self.clip_seconds} holds no sample at {self.rate} Hz; use a longer clip")

    @property
    def clip_samples(self) -> int:
        return round(self.clip_seconds * self.rate)

    @property
    def frames(self) -> int:
        """Frames of a clip's spectrogram (centred frames: one per hop, plus one)."""
        return self.clip_samples // self.hop_length + 1


@dataclass(frozen=True)
class SpecViewsConfig:
    """The views of a log-mel spectrogram for VICReg on sound (spec §4), per clip and independent.

    A random time crop of ``crop`` of the frames (every view of a batch has the same length), a shift
    of up to ``freq_shift`` mel bands up or down, a gain of up to ``gain_db`` either way, mixed with
    probability ``noise_p`` with noise of flat mel
    spectrum, or with ``mix_p`` with another clip of the batch, at an SNR drawn in the range given
    (mixing adds powers: the mel spectra are summed, not their logarithms), then ``time_masks`` and
    ``freq_masks`` masks of up to ``time_mask`` of the frames and ``freq_mask`` of the mel bands,
    filled with the view's mean.
    """

    crop: float = 0.5
    freq_shift: int = 0
    gain_db: float = 6.0
    noise_p: float = 0.3
    noise_snr_db: tuple[float, float] = (5.0, 20.0)
    mix_p: float = 0.3
    mix_snr_db: tuple[float, float] = (5.0, 20.0)
    time_masks: int = 2
    time_mask: float = 0.1
    freq_masks: int = 2
    freq_mask: float = 0.15

    def __post_init__(self) -> None:
        finite(self, "spec_views.")
        check(0 < self.crop <= 1, f"spec_views.crop={self.crop} must be in (0, 1]")
        check(self.freq_shift >= 0, f"spec_views.freq_shift={self.freq_shift} must be >= 0")
        check(self.gain_db >= 0, f"spec_views.gain_db={self.gain_db} must be >= 0")
        prob("spec_views.noise_p", self.noise_p)
        prob("spec_views.mix_p", self.mix_p)
        interval("spec_views.noise_snr_db", self.noise_snr_db, -100.0, 200.0)
        interval("spec_views.mix_snr_db", self.mix_snr_db, -100.0, 200.0)
        check(self.time_masks >= 0 and self.freq_masks >= 0, "spec_views.time_masks and freq_masks must be >= 0")
        check(0 <= self.time_mask < 1 and 0 <= self.freq_mask < 1,
               "spec_views.time_mask and freq_mask are fractions in [0, 1)")


@dataclass(frozen=True)
class ResynthConfig:
    """Griffin-Lim resynthesis of a log-mel spectrogram (``viclab sound resynth``): the clip's features are
    ``sound``'s (``resolve("resynth", preset)`` takes the training recipe's, default ``sound``)."""

    n_iter: int = 32  # Griffin-Lim iterations
    momentum: float = 0.99  # fast Griffin-Lim momentum
    seed: int = 0  # the random initial phase
    # Longer clips are refused: the mel inversion and Griffin-Lim take about a second of a 2-core CPU per
    # second of 16 kHz audio (a minute: 67 s and 0.5 GB), with no progress to show.
    max_seconds: float = 60.0
    sound: SoundConfig = field(default_factory=SoundConfig)
