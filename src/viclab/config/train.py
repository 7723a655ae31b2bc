"""The training run: data, views T, encoder and projector, VICReg loss, optimiser, loop, and for sound the
decoding, log-mel features and spectrogram views; :class:`Config` holds them. Griffin-Lim's settings too."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from viclab.config.override import PRECISIONS, at_least, check, finite, interval, known, override, prob


@dataclass(frozen=True)
class DataConfig:
    """Which images to train on and where they live."""

    dataset: str = "cifar10"
    data_dir: str | None = None  # None: $VICLAB_DATA, else the user cache dir (see viclab.data.paths)
    subset: int = 0  # only the first N training images (0 = all): for smoke runs and tests

    def __post_init__(self) -> None:
        check(self.subset >= 0, f"data.subset={self.subset} must be >= 0 (0 = all images)")


@dataclass(frozen=True)
class SplitConfig:
    """Splitting a folder of class sub-folders into train/val/test (``viclab split``); checked by the split."""

    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)  # train val test shares (or train test), summing to 1
    seed: int = 0
    mode: str = "symlink"  # symlink, copy or hardlink


@dataclass(frozen=True)
class AugmentConfig:
    """The view distribution T, by default the exercise's (spec §2); probabilities are per image."""

    size: int = 32
    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    jitter_p: float = 1.0
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_kernel: int = 3
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    # Multi-crop (SwAV, DINO): besides the two views above, local_crops small views of local_size pixels, cut from
    # local_crop_scale of the image; each is pulled towards both large views (viclab.losses.VICRegLoss).
    local_crops: int = 0
    local_size: int = 16
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    # CIFAR-10's channel statistics: the normalisation of the CIFAR-trained backbones (viclab.models.registry).
    mean: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
    std: tuple[float, float, float] = (0.247, 0.243, 0.261)

    def __post_init__(self) -> None:
        finite(self, "augment.")
        check(self.size > 0, f"augment.size={self.size} must be > 0")
        check(self.local_crops >= 0 and self.local_size > 0,
              f"augment.local_crops={self.local_crops} must be >= 0 and augment.local_size={self.local_size} > 0")
        interval("augment.crop_scale", self.crop_scale, 1e-6, 1.0)
        interval("augment.local_crop_scale", self.local_crop_scale, 1e-6, 1.0)
        interval("augment.crop_ratio", self.crop_ratio, 1e-6, float("inf"))
        for name in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            prob(f"augment.{name}", getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            check(getattr(self, name) >= 0, f"augment.{name} must be >= 0")
        check(0 <= self.hue <= 0.5, f"augment.hue={self.hue} must be in [0, 0.5]")
        check(self.blur_kernel >= 1 and self.blur_kernel % 2 == 1,
               f"augment.blur_kernel={self.blur_kernel} must be a positive odd integer")
        interval("augment.blur_sigma", self.blur_sigma, 1e-6, float("inf"))
        # Reflect padding needs a radius below the view's side.
        side = min(self.size, self.local_size) if self.local_crops else self.size
        check(self.blur_p == 0 or self.blur_kernel // 2 < side,
               f"augment.blur_kernel={self.blur_kernel} is too large for {side}-pixel views; use an odd "
               f"kernel of at most {2 * side - 1} (or augment.blur_p=0)")
        check(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0,
               "augment.mean and augment.std need 3 values each, std > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder f (a registered backbone) and projector h."""

    backbone: str = "exercise_resnet18"
    projector: str = "512-512-512"  # the projector MLP's hidden and output widths (spec §2)
    channels_last: bool = True
    # torch.compile the training step's forward passes and loss as one graph (worth it on a GPU; on the CPU the
    # compile takes minutes).
    compile: bool = False
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch, not each process's


@dataclass(frozen=True)
class LossConfig:
    """VICReg coefficients (spec §1): lambda, mu, nu, gamma, eps and the variant."""

    inv_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    gamma: float = 1.0
    eps: float = 1e-4
    variant: str = "spec"
    # Under torchrun: variance and covariance on the global batch gathered from all processes, so N processes of
    # batch b compute the loss of one process of batch N*b.
    gather_distributed: bool = True

    def __post_init__(self) -> None:
        finite(self, "loss.")
        known(self, "loss.", "variant", ("spec", "official"), "'spec' or 'official'")
        check(self.eps > 0, f"loss.eps={self.eps} must be > 0")
        # gamma <= 0 makes the variance hinge max(0, gamma - sigma) identically 0: no variance term at all.
        check(self.gamma > 0, f"loss.gamma={self.gamma} must be > 0 (the target standard deviation); "
                               "to switch the variance term off use loss.var_weight=0")
        for name in ("inv_weight", "var_weight", "cov_weight"):
            check(getattr(self, name) >= 0, f"loss.{name} must be >= 0")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (exercise: constant-rate Adam)."""

    name: str = "adam"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    # A warm-up (warmup_epochs > 0) lasts at least this many steps: on a small folder one epoch is a step or two,
    # and the loss explodes. 5 leaves every CIFAR-10 recipe (7 or more warm-up steps) as it was.
    warmup_min_steps: int = 5
    # How optim.lr follows the global batch (train.batch_size x processes) under torchrun: none (the same rate
    # whatever the world size), linear (x processes) or sqrt (x sqrt(processes)).
    lr_scaling: str = "none"
    # false: no weight decay on biases and normalisation weights (parameters of at most one dimension), as DINO.
    decay_norm_bias: bool = True

    def __post_init__(self) -> None:
        finite(self, "optim.")
        known(self, "optim.", "lr_scaling", ("none", "linear", "sqrt"))
        known(self, "optim.", "name", ("adam", "adamw"), "'adam' or 'adamw'")
        known(self, "optim.", "schedule", ("constant", "cosine"), "'constant' or 'cosine'")
        check(self.lr > 0, f"optim.lr={self.lr} must be > 0")
        check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        at_least(self, "optim.", 0, "warmup_min_steps", "weight_decay")
        check(all(0.0 <= b < 1.0 for b in self.betas),
               f"optim.betas={self.betas} must both lie in [0, 1); the usual values are 0.9,0.999")


@dataclass(frozen=True)
class TrainConfig:
    """Loop length, batch, seed, and where and how precisely to compute."""

    epochs: int = 30
    batch_size: int = 256  # per process: under torchrun the global batch is batch_size x processes
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: on CUDA bf16 where the GPU computes it natively (compute capability >= 8.0), else fp16 with a
    # gradient scaler; on the CPU bf16 where it has avx512_bf16 or AMX, else fp32 (viclab.core.runtime.select_runtime)
    precision: str = "auto"
    eval_test: bool = True  # the three terms on the test set once per epoch
    # Training runs whole epochs until it has taken at least this many steps (5 epochs of 100 images are 5 steps
    # at batch 64); 50 leaves every CIFAR-10 recipe (105 or more steps) as it was.
    min_steps: int = 50
    # vicreg: spec §1's loss on two views of each image. shift: each image's rotations by 0/90/180/270 degrees are
    # distinct samples (views of one copy share its rotation) and a head on the encoder learns to name the rotation,
    # weighted shift_weight (viclab.losses.shift): CSI's lesson for anomaly detection (docs/detection.md).
    # rotation: that head alone on one view of each rotated copy (RotNet).
    objective: str = "vicreg"
    shift_weight: float = 20.0

    def __post_init__(self) -> None:
        known(self, "train.", "objective", ("vicreg", "shift", "rotation"))
        check(self.shift_weight >= 0, f"train.shift_weight={self.shift_weight} must be >= 0")
        at_least(self, "train.", 1, "epochs")
        at_least(self, "train.", 0, "min_steps")
        check(self.batch_size >= 2, f"train.batch_size={self.batch_size} must be >= 2 (variance needs 2 samples)")
        known(self, "train.", "precision", PRECISIONS)


@dataclass(frozen=True)
class ViewsConfig:
    """Where each step's pair comes from: ``augment``, two independent draws of T (VICReg); ``neighbours`` (spec
    S6), an image and one of its ``k`` nearest training images in the representation space of the encoder
    ``source``, chosen at random each step, without augmentation (normalise only)."""

    kind: str = "augment"
    source: str | None = None  # neighbours: a run folder or .safetensors encoder
    k: int = 3

    def __post_init__(self) -> None:
        known(self, "views.", "kind", ("augment", "neighbours"), "'augment' or 'neighbours'")
        at_least(self, "views.", 1, "k")
        check(self.kind != "neighbours" or bool(self.source),
               "views.kind=neighbours needs views.source, the encoder whose neighbours pair the images")


@dataclass(frozen=True)
class SoundConfig:
    """Sound clips and their log-mel spectrograms (spec §4).

    Decoding: any WAV/FLAC/OGG file is mixed to mono (the mean of its channels, or ``channel``), resampled to
    ``rate`` and cut into clips of ``clip_seconds``: one per file (cropped, or zero-padded at the end), or with
    ``window_hop_seconds > 0`` sliding windows every hop (the last one padded). Features: ``(20 / power) *
    log10(mel + log_offset)`` of the ``power`` spectrogram (Hann window, centred frames) through a Slaney mel
    filterbank. The defaults are the DCASE 2020 Task 2 baseline's: 16 kHz, n_fft 1024, hop 512, 128 mels, 10 log10.
    """

    rate: int = 16_000
    channel: int = -1
    clip_seconds: float = 10.0
    window_hop_seconds: float = 0.0
    n_fft: int = 1024
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float = 0.0  # 0: rate / 2
    power: float = 2.0
    log_offset: float = 2.220446049250313e-16  # the DCASE baseline's sys.float_info.epsilon
    # FSDD's test clips: "index" (its own split: recordings 0-4 of each speaker and digit) or "speaker" (the
    # test_speakers' clips).
    split: str = "index"
    test_speakers: tuple[str, ...] = ("theo",)
    # MIMII's test clips (it has no split): a seeded test_share of each machine ID's normal files, and every
    # abnormal file.
    test_share: float = 0.5
    label: str = "class"  # FSDD: "class" (the digit) or "speaker"
    machines: tuple[str, ...] = ()  # MIMII/DCASE: machine types kept (() = all)
    machine_ids: tuple[str, ...] = ()  # MIMII/DCASE: machine IDs kept, e.g. id_00 (() = all)
    # MIMII/DCASE: at most this many files per machine ID and condition (a seeded choice; 0 = all), to keep a
    # budget whatever the size of the download.
    max_files: int = 0
    seed: int = 0  # MIMII's split and the max_files choice

    def __post_init__(self) -> None:
        finite(self, "sound.")
        check(self.rate > 0, f"sound.rate={self.rate} must be > 0")
        check(self.channel >= -1, f"sound.channel={self.channel} must be -1 (mean of channels) or a channel index")
        check(self.clip_seconds > 0, f"sound.clip_seconds={self.clip_seconds} must be > 0")
        at_least(self, "sound.", 0, "window_hop_seconds")
        at_least(self, "sound.", 2, "n_fft")
        at_least(self, "sound.", 1, "hop_length", "n_mels")
        nyquist = self.rate / 2
        check(0 <= self.fmin < (self.fmax or nyquist) <= nyquist,
               f"sound.fmin={self.fmin}, sound.fmax={self.fmax} must satisfy 0 <= fmin < fmax <= rate / 2 = "
               f"{nyquist:g} (fmax 0 means rate / 2)")
        check(self.power > 0, f"sound.power={self.power} must be > 0 (2: power, 1: magnitude)")
        check(self.log_offset > 0, f"sound.log_offset={self.log_offset} must be > 0")
        known(self, "sound.", "split", ("index", "speaker"))
        check(0 < self.test_share < 1, f"sound.test_share={self.test_share} must be in (0, 1)")
        known(self, "sound.", "label", ("class", "speaker"), "class or speaker")
        check(self.max_files >= 0, f"sound.max_files={self.max_files} must be >= 0 (0 = all)")
        check(self.clip_samples >= 1,
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

    A random time crop of ``crop`` of the frames (every view of a batch has the same length), a shift of up to
    ``freq_shift`` mel bands up or down, a gain of up to ``gain_db`` either way, mixed with probability ``noise_p``
    with noise of flat mel spectrum, or with ``mix_p`` with another clip of the batch, at an SNR drawn in the range
    given (mixing adds powers: the mel spectra are summed, not their logarithms), then ``time_masks`` and
    ``freq_masks`` masks of up to ``time_mask`` of the frames and ``freq_mask`` of the mel bands, filled with the
    view's mean.
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
        at_least(self, "spec_views.", 0, "freq_shift", "gain_db")
        prob("spec_views.noise_p", self.noise_p)
        prob("spec_views.mix_p", self.mix_p)
        interval("spec_views.noise_snr_db", self.noise_snr_db, -100.0, 200.0)
        interval("spec_views.mix_snr_db", self.mix_snr_db, -100.0, 200.0)
        check(self.time_masks >= 0 and self.freq_masks >= 0, "spec_views.time_masks and freq_masks must be >= 0")
        check(0 <= self.time_mask < 1 and 0 <= self.freq_mask < 1,
               "spec_views.time_mask and freq_mask are fractions in [0, 1)")


@dataclass(frozen=True)
class Config:
    """Everything that determines a training run's numbers."""

    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    views: ViewsConfig = field(default_factory=ViewsConfig)
    # Sound datasets only (viclab.data.SOUND_DATASETS): decoding, log-mel features, spectrogram views.
    sound: SoundConfig = field(default_factory=SoundConfig)
    spec_views: SpecViewsConfig = field(default_factory=SpecViewsConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> Config:
        return override(Config(), d, origin=origin)


@dataclass(frozen=True)
class ResynthConfig:
    """Griffin-Lim resynthesis of a log-mel spectrogram (``viclab sound resynth``): the clip's features are
    ``sound``'s (``resolve("resynth", preset)`` takes the training recipe's, default ``sound``)."""

    n_iter: int = 32  # Griffin-Lim iterations
    momentum: float = 0.99  # fast Griffin-Lim momentum
    seed: int = 0  # the random initial phase
    # Longer clips are refused: the mel inversion and Griffin-Lim take about a second of a 2-core CPU per second
    # of 16 kHz audio (a minute: 67 s and 0.5 GB), with no progress to show.
    max_seconds: float = 60.0
    sound: SoundConfig = field(default_factory=SoundConfig)
