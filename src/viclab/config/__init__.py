"""Typed run configuration: one frozen dataclass per concern, one home per default.

A config is built from a preset, then a TOML file, then ``section.field=value``
overrides, in that order. Every run writes the resolved result as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from viclab.core.errors import ViclabError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.247, 0.243, 0.261)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ViclabError(message)


def _prob(name: str, p: float) -> None:
    _check(0.0 <= p <= 1.0, f"{name}={p} is not a probability; use a value in [0, 1]")


def _finite(obj: Any, prefix: str = "") -> None:
    """Every float field (and float in a tuple field) of ``obj`` is a finite number: a NaN
    compares false with every bound, so it would pass the range checks and poison a run."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ViclabError(f"{prefix}{f.name}={v} is not a finite number; give a real value")


def _interval(name: str, lo_hi: tuple[float, float], lo: float, hi: float) -> None:
    a, b = lo_hi
    _check(lo <= a <= b <= hi, f"{name}={lo_hi} must satisfy {lo} <= min <= max <= {hi}")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class DataConfig:
    """Which images to train on and where they live."""

    dataset: str = "cifar10"
    # None: $VICLAB_DATA, else the user cache dir (see viclab.data.paths).
    data_dir: str | None = None
    # Use only the first N training images (0 = all): for smoke runs and tests.
    subset: int = 0

    def __post_init__(self) -> None:
        _check(self.subset >= 0, f"data.subset={self.subset} must be >= 0 (0 = all images)")


@dataclass(frozen=True)
class AugmentConfig:
    """The view distribution T. Defaults are the exercise's (spec §2).

    Probabilities are per image; ``jitter_p = 1`` means colour jitter always applies.
    """

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
    mean: tuple[float, float, float] = CIFAR_MEAN
    std: tuple[float, float, float] = CIFAR_STD

    def __post_init__(self) -> None:
        _finite(self, "augment.")
        _check(self.size > 0, f"augment.size={self.size} must be > 0")
        _interval("augment.crop_scale", self.crop_scale, 1e-6, 1.0)
        _interval("augment.crop_ratio", self.crop_ratio, 1e-6, float("inf"))
        for name in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            _prob(f"augment.{name}", getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            _check(getattr(self, name) >= 0, f"augment.{name} must be >= 0")
        _check(0 <= self.hue <= 0.5, f"augment.hue={self.hue} must be in [0, 0.5]")
        _check(self.blur_kernel >= 1 and self.blur_kernel % 2 == 1,
               f"augment.blur_kernel={self.blur_kernel} must be a positive odd integer")
        _interval("augment.blur_sigma", self.blur_sigma, 1e-6, float("inf"))
        # Reflect padding needs a radius below the view's side.
        _check(self.blur_p == 0 or self.blur_kernel // 2 < self.size,
               f"augment.blur_kernel={self.blur_kernel} is too large for {self.size}-pixel views; use an odd "
               f"kernel of at most {2 * self.size - 1} (or augment.blur_p=0)")
        _check(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0,
               "augment.mean and augment.std need 3 values each, std > 0")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder f (a registered backbone) and projector h."""

    backbone: str = "exercise_resnet18"
    # Hidden and output widths of the projector MLP, e.g. "512-512-512" (spec §2).
    projector: str = "512-512-512"
    channels_last: bool = True
    # torch.compile the training step's forward passes and loss as one graph (worth it on a GPU;
    # on the CPU the compile takes minutes).
    compile: bool = False
    # Under torchrun: BatchNorm statistics over the global batch of all processes rather than each
    # process's own (no effect in one process).
    sync_bn: bool = False


@dataclass(frozen=True)
class LossConfig:
    """VICReg coefficients (spec §1): lambda, mu, nu, gamma, eps and the variant."""

    inv_weight: float = 25.0
    var_weight: float = 25.0
    cov_weight: float = 1.0
    gamma: float = 1.0
    eps: float = 1e-4
    variant: str = "spec"
    # Under torchrun: variance and covariance on the global batch gathered from all processes, so
    # N processes of batch b compute the loss of one process of batch N*b (no effect in one process).
    gather_distributed: bool = True

    def __post_init__(self) -> None:
        _finite(self, "loss.")
        _check(self.variant in ("spec", "official"),
               f"loss.variant={self.variant!r} is unknown; use 'spec' or 'official'")
        _check(self.eps > 0, f"loss.eps={self.eps} must be > 0")
        # gamma <= 0 makes the variance hinge max(0, gamma - sigma) identically 0: no variance term at all.
        _check(self.gamma > 0, f"loss.gamma={self.gamma} must be > 0 (the target standard deviation); "
                               "to switch the variance term off use loss.var_weight=0")
        for name in ("inv_weight", "var_weight", "cov_weight"):
            _check(getattr(self, name) >= 0, f"loss.{name} must be >= 0")


LR_SCALING = ("none", "linear", "sqrt")


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule (exercise: constant-rate Adam)."""

    name: str = "adam"
    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-6
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    # A warm-up (warmup_epochs > 0) lasts at least this many steps: on a small folder one epoch is a
    # step or two, and the loss explodes. 5 leaves every CIFAR-10 recipe (a 0.2-epoch warm-up is 7 steps
    # of one class's 4,500 images at batch 128) as it was.
    warmup_min_steps: int = 5
    # How optim.lr follows the global batch (train.batch_size per process x processes) under torchrun:
    # none (the same rate whatever the world size), linear (x processes) or sqrt (x sqrt(processes)).
    lr_scaling: str = "none"
    # false: no weight decay on biases and normalisation weights (every parameter of at most one
    # dimension), as DINO trains vision transformers.
    decay_norm_bias: bool = True

    def __post_init__(self) -> None:
        _finite(self, "optim.")
        _check(self.lr_scaling in LR_SCALING,
               f"optim.lr_scaling={self.lr_scaling!r} is unknown; use {', '.join(LR_SCALING)}")
        _check(self.name in ("adam", "adamw"), f"optim.name={self.name!r} is unknown; use 'adam' or 'adamw'")
        _check(self.schedule in ("constant", "cosine"),
               f"optim.schedule={self.schedule!r} is unknown; use 'constant' or 'cosine'")
        _check(self.lr > 0, f"optim.lr={self.lr} must be > 0")
        _check(self.warmup_epochs >= 0, "optim.warmup_epochs must be >= 0")
        _check(self.warmup_min_steps >= 0, f"optim.warmup_min_steps={self.warmup_min_steps} must be >= 0")
        _check(all(0.0 <= b < 1.0 for b in self.betas),
               f"optim.betas={self.betas} must both lie in [0, 1); the usual values are 0.9,0.999")
        _check(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay} must be >= 0")


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
    # Training runs whole epochs until it has taken at least this many steps: 5 epochs of 100 images
    # are 5 steps at batch 64. 50 leaves every CIFAR-10 recipe (105 or more steps) as it was.
    min_steps: int = 50

    def __post_init__(self) -> None:
        _check(self.epochs >= 1, f"train.epochs={self.epochs} must be >= 1")
        _check(self.min_steps >= 0, f"train.min_steps={self.min_steps} must be >= 0")
        _check(self.batch_size >= 2, f"train.batch_size={self.batch_size} must be >= 2 (variance needs 2 samples)")
        _check(self.precision in PRECISIONS,
               f"train.precision={self.precision!r} is unknown; use {', '.join(PRECISIONS)}")


@dataclass(frozen=True)
class ViewsConfig:
    """Where each step's pair comes from.

    ``augment``: two independent draws of T (VICReg). ``neighbours`` (spec S6): an image
    and one of its ``k`` nearest training images in the representation space of the
    encoder ``source``, chosen at random each step, without augmentation (normalise only).
    """

    kind: str = "augment"
    source: str | None = None  # neighbours: a run folder or .safetensors encoder
    k: int = 3

    def __post_init__(self) -> None:
        _check(self.kind in ("augment", "neighbours"),
               f"views.kind={self.kind!r} is unknown; use 'augment' or 'neighbours'")
        _check(self.k >= 1, f"views.k={self.k} must be >= 1")
        _check(self.kind != "neighbours" or bool(self.source),
               "views.kind=neighbours needs views.source, the encoder whose neighbours pair the images")


SOUND_SPLITS = ("index", "speaker")
# `viclab sound resynth` refuses longer clips (--max-seconds): the mel inversion and Griffin-Lim take about
# a second of a 2-core CPU per second of 16 kHz audio (a minute: 67 s and 0.5 GB), with no progress to show.
RESYNTH_MAX_SECONDS = 60.0


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
        _finite(self, "sound.")
        _check(self.rate > 0, f"sound.rate={self.rate} must be > 0")
        _check(self.channel >= -1, f"sound.channel={self.channel} must be -1 (mean of channels) or a channel index")
        _check(self.clip_seconds > 0, f"sound.clip_seconds={self.clip_seconds} must be > 0")
        _check(self.window_hop_seconds >= 0, f"sound.window_hop_seconds={self.window_hop_seconds} must be >= 0")
        _check(self.n_fft >= 2, f"sound.n_fft={self.n_fft} must be >= 2")
        _check(self.hop_length >= 1, f"sound.hop_length={self.hop_length} must be >= 1")
        _check(self.n_mels >= 1, f"sound.n_mels={self.n_mels} must be >= 1")
        nyquist = self.rate / 2
        _check(0 <= self.fmin < (self.fmax or nyquist) <= nyquist,
               f"sound.fmin={self.fmin}, sound.fmax={self.fmax} must satisfy 0 <= fmin < fmax <= rate / 2 = "
               f"{nyquist:g} "
               "(fmax 0 means rate / 2)")
        _check(self.power > 0, f"sound.power={self.power} must be > 0 (2: power, 1: magnitude)")
        _check(self.log_offset > 0, f"sound.log_offset={self.log_offset} must be > 0")
        _check(self.split in SOUND_SPLITS, f"sound.split={self.split!r} is unknown; use {', '.join(SOUND_SPLITS)}")
        _check(0 < self.test_share < 1, f"sound.test_share={self.test_share} must be in (0, 1)")
        _check(self.label in ("class", "speaker"), f"sound.label={self.label!r} is unknown; use class or speaker")
        _check(self.max_files >= 0, f"sound.max_files={self.max_files} must be >= 0 (0 = all)")
        _check(round(self.clip_seconds * self.rate) >= 1,
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
        _finite(self, "spec_views.")
        _check(0 < self.crop <= 1, f"spec_views.crop={self.crop} must be in (0, 1]")
        _check(self.freq_shift >= 0, f"spec_views.freq_shift={self.freq_shift} must be >= 0")
        _check(self.gain_db >= 0, f"spec_views.gain_db={self.gain_db} must be >= 0")
        _prob("spec_views.noise_p", self.noise_p)
        _prob("spec_views.mix_p", self.mix_p)
        _interval("spec_views.noise_snr_db", self.noise_snr_db, -100.0, 200.0)
        _interval("spec_views.mix_snr_db", self.mix_snr_db, -100.0, 200.0)
        _check(self.time_masks >= 0 and self.freq_masks >= 0, "spec_views.time_masks and freq_masks must be >= 0")
        _check(0 <= self.time_mask < 1 and 0 <= self.freq_mask < 1,
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config") -> Config:
        return apply_mapping(Config(), d, origin=origin)


@dataclass(frozen=True)
class EvalConfig:
    """What evaluating a frozen encoder computes (spec §3); the CLI's flags map onto it.

    Not part of :class:`Config`: evaluation never changes a training run's numbers.
    """

    seed: int = 0  # queries, held-out split, K-means, t-SNE
    probe_weight_decays: tuple[float, ...] = (1e-5, 1e-4, 1e-3, 1e-2)  # chosen on held-out 10%
    knn_k: int = 20  # weighted kNN classifier (solo-learn's k and temperature)
    knn_temperature: float = 0.07
    retrieval_k: int = 5  # nearest / most distant images per query
    precision_queries: int = 10_000  # training images averaged in precision@k
    anomaly_k: int = 2  # score = mean L2 distance to the k nearest training representations
    anomaly_top: int = 7  # most anomalous test images shown per run
    clusters: int = 10
    tsne_points: int = 10_000  # points t-SNE embeds in the cluster figure (a seeded sample)
    device: str = "auto"  # where encoders run: auto (CUDA if present) | cpu | cuda[:N]
    # Representations are computed in fp32 on every device unless asked otherwise (bf16/fp16 change
    # the numbers; the feature cache keys them apart).
    precision: str = "fp32"

    def __post_init__(self) -> None:
        _finite(self)
        _check(self.precision in ("fp32", "bf16", "fp16"),
               f"precision={self.precision!r} is unknown; use fp32, bf16 or fp16")
        for name in ("knn_k", "retrieval_k", "precision_queries", "anomaly_k", "anomaly_top", "tsne_points"):
            _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        _check(self.clusters >= 2, f"clusters={self.clusters} must be >= 2")
        _check(self.knn_temperature > 0, f"knn_temperature={self.knn_temperature} must be > 0")
        _check(len(self.probe_weight_decays) >= 1 and min(self.probe_weight_decays) >= 0,
               "probe_weight_decays needs at least one value, each >= 0")
        _check(self.tsne_points >= 5, f"tsne_points={self.tsne_points} must be >= 5 (t-SNE needs a neighbourhood)")


EVAL_DEFAULTS = EvalConfig()


@dataclass(frozen=True)
class LatentConfig:
    """Latent optimisation (spec S5): a free code per training image, no encoder.

    ``pairs="naive"`` pairs each code with itself (the two "views" of an image share
    its code, so invariance is identically 0); ``pairs="graph"`` pairs it with one of
    its ``graph_k`` nearest images in a fixed data space (the representations of
    ``graph_features``), which makes the objective Laplacian-Eigenmaps-like.
    """

    pairs: str = "graph"
    dataset: str = "cifar10"
    data_dir: str | None = None
    subset: int = 0  # first N training images (0 = all)
    dim: int = 128  # code width (the exercise's representation dim)
    projector: str = "512-512-512"
    graph_features: str = "random:conv4"
    graph_k: int = 10
    epochs: int = 30
    batch_size: int = 256
    # Sparse (lazy) Adam on the codes: a code moves only when its image is in the batch, a few
    # times per epoch, so it needs a far larger rate than the projector (measured: 28.9% probe
    # after 20 epochs at 0.2, 26.5% at 0.05).
    lr: float = 0.2
    projector_lr: float = 1e-3
    probe_fraction: float = 0.9  # codes the probe trains on; it is tested on the rest
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        _finite(self)
        _check(self.pairs in ("graph", "naive"), f"pairs={self.pairs!r} is unknown; use 'graph' or 'naive'")
        for name in ("dim", "graph_k", "epochs"):
            _check(getattr(self, name) >= 1, f"{name}={getattr(self, name)} must be >= 1")
        _check(self.batch_size >= 2, f"batch_size={self.batch_size} must be >= 2 (variance needs 2 samples)")
        _check(self.lr > 0 and self.projector_lr > 0, "lr and projector_lr must be > 0")
        _check(0 < self.probe_fraction < 1, f"probe_fraction={self.probe_fraction} must be in (0, 1)")
        _check(self.subset >= 0, f"subset={self.subset} must be >= 0 (0 = all images)")


@dataclass(frozen=True)
class EigenmapsConfig:
    """Laplacian Eigenmaps (spec S7) on the training and test images together.

    Features: an encoder source, by default the seeded untrained ``conv4`` CNN; graph:
    symmetric binary ``k``-NN (exact L2); representation: the ``dim`` smallest
    non-trivial generalised eigenvectors of the graph Laplacian.
    """

    dataset: str = "cifar10"
    data_dir: str | None = None
    features: str = "random:conv4"
    k: int = 10
    dim: int = 64
    solver: str = "arpack"  # fastest measured (benchmarks/laplacian.py)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self.k >= 1, f"k={self.k} must be >= 1")
        _check(self.dim >= 1, f"dim={self.dim} must be >= 1")
        _check(self.solver in ("arpack", "lobpcg", "sklearn"),
               f"solver={self.solver!r} is unknown; use arpack, lobpcg or sklearn")


PRESETS: dict[str, Config] = {
    # Spec §2 exactly.
    "exercise": Config(),
    # The best linear probe after <= 10 minutes of training on a 2-core CPU with bf16 (AMX): 68.8% on all
    # 10,000 CIFAR-10 test images after 5 epochs in 482 s (docs/cpu_recipe.md: widths, pool placement,
    # batch, learning rate and epochs searched). No blur, as solo-learn's CIFAR recipes, and a 2048-wide
    # projector (20-NN 59.1% vs 56.6% with blur and 1024, in an earlier fp32 search).
    "cpu": Config(
        augment=AugmentConfig(blur_p=0.0),
        model=ModelConfig(backbone="small_cnn", projector="2048-2048"),
        optim=OptimConfig(name="adamw", lr=4e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=1.0),
        train=TrainConfig(epochs=5, batch_size=128),
    ),
    # VICReg with a vision transformer (spec §4), DINO/DeiT style: AdamW with weight decay 0.05 on the
    # weight matrices only (none on biases and norms), a linear warm-up of 10% of the run, then cosine; no
    # blur, as the cpu preset. ViT-Ti/4 on 32-px images (64 patches); 100 epochs are a GPU run: on a 2-core
    # CPU it trains about 30 images/s, and 10 minutes (one epoch of 16,673 images) give a 43.1% linear
    # probe, against small_cnn's 64.5% (docs/vit.md).
    "vit": Config(
        augment=AugmentConfig(blur_p=0.0),
        model=ModelConfig(backbone="vit_tiny", projector="2048-2048"),
        optim=OptimConfig(name="adamw", lr=5e-4, weight_decay=0.05, schedule="cosine", warmup_epochs=10.0,
                          decay_norm_bias=False),
        train=TrainConfig(epochs=100, batch_size=128),
    ),
    # VICReg on spoken digits (FSDD, 8 kHz): one-second clips, 64 mels of 32 ms frames every 8 ms, the
    # spectrogram CNN. Views: a time crop of 90% (a digit lasts 0.4 s of the second: shorter crops often
    # miss it), a gain; no mixing (another digit mixed in changes the label) and no noise. Linear probe
    # top-1 with two speakers held out (docs/sound.md): 31.9% after 6 epochs at lr 5e-4 (38.0% after 10);
    # 22.1% without the gain; 23.2% with shifts of up to 4 mel bands; 20.2% at 1e-3 with crops of 70% and
    # noise; after 10 epochs at 2e-3, 12.2% with crops of 50%, mixing and noise, 13.4% with crops of 90%
    # and noise. A random-init encoder: 40.4%.
    "fsdd": Config(
        data=DataConfig(dataset="fsdd"),
        model=ModelConfig(backbone="spec_cnn", projector="2048-2048"),
        optim=OptimConfig(name="adamw", lr=5e-4, weight_decay=1e-4, schedule="cosine", warmup_epochs=1.0),
        train=TrainConfig(epochs=10, batch_size=128),
        spec_views=SpecViewsConfig(crop=0.9, noise_p=0.0, mix_p=0.0),
        # Zero padding is digital silence: a floor at -80 dB (log_offset 1e-8), below the quietest speech
        # (about -65 dB), keeps it from dominating the statistics as the default floor (-156 dB) would.
        sound=SoundConfig(rate=8_000, clip_seconds=1.0, n_fft=256, hop_length=64, n_mels=64, log_offset=1e-8),
    ),
    # VICReg on machine sounds (MIMII, 16 kHz): the DCASE baseline's features of 10-second clips.
    "sound": Config(
        data=DataConfig(dataset="mimii"),
        model=ModelConfig(backbone="spec_cnn", projector="2048-2048"),
        optim=OptimConfig(name="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_epochs=1.0),
        train=TrainConfig(epochs=100, batch_size=16),
        # Channel 0 of MIMII's eight microphones, as DCASE 2020 Task 2 uses them.
        sound=SoundConfig(channel=0),
    ),
}


def get_preset(name: str) -> Config:
    if name not in PRESETS:
        raise ViclabError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a TOML value or a command-line string to the field's declared type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, key)
    if origin is tuple:
        items = (value.split(",") if value.strip() else []) if isinstance(value, str) else list(value)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]: any length (a config checks its own)
            return tuple(_coerce(v, args[0], key) for v in items)
        if len(items) != len(args):
            raise ViclabError(f"{key} needs {len(args)} comma-separated values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(items, args))
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, float) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
                raise ValueError
            return int(value)
        if tp is float:
            return float(value)
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        pass
    else:
        raise ViclabError(f"{key}: unsupported type {tp}")
    raise ViclabError(f"{key}={value!r} is not a valid {getattr(tp, '__name__', tp)}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def apply_mapping(cfg: Config, mapping: dict[str, Any], origin: str) -> Config:
    """Return ``cfg`` with the sections/fields in ``mapping`` replaced (types coerced)."""
    if not isinstance(mapping, dict):
        raise ViclabError(f"{origin} holds a {type(mapping).__name__}, not a table of config sections")
    sections = {f.name: f for f in fields(Config)}
    updates = {}
    for sec_name, values in mapping.items():
        if sec_name not in sections:
            raise ViclabError(f"unknown config section {sec_name!r} in {origin}; valid: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ViclabError(f"config section {sec_name!r} in {origin} must be a table of fields")
        sec = getattr(cfg, sec_name)
        hints = _hints(type(sec))
        changes = {}
        for key, value in values.items():
            if key not in hints:
                raise ViclabError(f"unknown config key '{sec_name}.{key}' in {origin}; valid: "
                                  + ", ".join(f"{sec_name}.{k}" for k in hints))
            changes[key] = _coerce(value, hints[key], f"{sec_name}.{key}")
        updates[sec_name] = replace(sec, **changes)
    return replace(cfg, **updates)


def parse_overrides(items: list[str]) -> dict[str, dict[str, str]]:
    """Turn ``["optim.lr=1e-3", ...]`` into ``{"optim": {"lr": "1e-3"}}``."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        sec, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            raise ViclabError(f"cannot read override {item!r}; write section.field=value, e.g. optim.lr=1e-3")
        out.setdefault(sec, {})[name] = value.strip()
    return out


def load_toml(path: str | Path) -> tuple[str | None, dict[str, Any]]:
    """Read a TOML config file: an optional top-level ``preset`` and section tables."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ViclabError(f"config file {path} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise ViclabError(f"config file {path} is not UTF-8 text; save it as UTF-8 TOML") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ViclabError(f"cannot read config file {path}: {e}") from None
    preset = data.pop("preset", None)
    return preset, data


def resolve_config(preset: str | None = None, toml_path: str | None = None,
                   overrides: list[str] | None = None, base: Config | None = None) -> Config:
    """Preset (or ``base``), then TOML file, then command-line overrides (later wins)."""
    file_preset, file_values = load_toml(toml_path) if toml_path else (None, {})
    cfg = base if base is not None and not (preset or file_preset) else get_preset(preset or file_preset or "exercise")
    if file_values:
        cfg = apply_mapping(cfg, file_values, origin=str(toml_path))
    if overrides:
        cfg = apply_mapping(cfg, parse_overrides(overrides), origin="the command line")
    return cfg


@dataclass(frozen=True)
class DetectDataConfig:
    """Which images are normal and which are tested (spec §4; §5's folder convention).

    Either a registered ``dataset`` whose ``normal_classes`` are normal (the others' test images
    are anomalies), or anomalib's ``Folder`` convention: a ``normal`` folder, an ``abnormal``
    folder and an optional ``normal_test`` folder; without it a seeded ``test_share`` of the
    normal images is held out as normal test data. ``anomalies``: another dataset or folder
    whose test images are all anomalous (e.g. ``mnist``) is added to the test set.
    """

    dataset: str = "cifar10"
    # Class names or indices of ``dataset`` that are normal, e.g. ("3", "5") or ("cat", "dog"); () = all.
    normal_classes: tuple[str, ...] = ()
    # The classes of ``dataset`` whose test images are the anomalies; () = every class that is not normal.
    anomaly_classes: tuple[str, ...] = ()
    normal: str | None = None
    abnormal: str | None = None
    normal_test: str | None = None
    test_share: float = 0.2
    # Normal training images kept out of fitting: the threshold at detect.fpr is calibrated on them.
    holdout: float = 0.1
    anomalies: str | None = None
    data_dir: str | None = None
    size: int = 32  # images of any size are resized to size x size
    seed: int = 0  # the held-out splits

    def __post_init__(self) -> None:
        _finite(self, "data.")
        _check(0 < self.test_share < 1, f"data.test_share={self.test_share} must be in (0, 1)")
        _check(0 <= self.holdout < 1, f"data.holdout={self.holdout} must be in [0, 1)")
        _check(self.size > 0, f"data.size={self.size} must be > 0")
        _check(self.seed >= 0, f"data.seed={self.seed} must be >= 0")
        _check(self.normal is not None or self.normal_test is None,
               "a normal-test folder needs a normal folder (--normal DIR) too")


@dataclass(frozen=True)
class AutoencoderConfig:
    """The convolutional autoencoder baseline (spec §4): trained on normal images by the engine."""

    widths: tuple[int, ...] = (32, 64, 128)
    latent: int = 64
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        _finite(self, "autoencoder.")
        _check(len(self.widths) >= 1 and min(self.widths) >= 1, "autoencoder.widths needs positive widths")
        _check(self.latent >= 1, f"autoencoder.latent={self.latent} must be >= 1")
        _check(self.epochs >= 1, f"autoencoder.epochs={self.epochs} must be >= 1")
        _check(self.batch_size >= 1, f"autoencoder.batch_size={self.batch_size} must be >= 1")
        _check(self.lr > 0, f"autoencoder.lr={self.lr} must be > 0")


@dataclass(frozen=True)
class DcaseConfig:
    """The DCASE 2020 Task 2 baseline (spec §5), for sound: a dense autoencoder over ``context``
    consecutive log-mel frames (``context x n_mels`` values; 5 x 128 = 640 in the baseline),
    ``depth`` hidden layers of ``hidden`` units each side of a ``bottleneck`` code, trained with
    Adam and MSE on every frame window of the normal clips; a clip's score is its windows' mean error."""

    context: int = 5
    hidden: int = 128
    bottleneck: int = 8
    depth: int = 4
    epochs: int = 100
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        _finite(self, "dcase.")
        for name in ("context", "hidden", "bottleneck", "depth", "epochs", "batch_size"):
            _check(getattr(self, name) >= 1, f"dcase.{name}={getattr(self, name)} must be >= 1")
        _check(self.lr > 0, f"dcase.lr={self.lr} must be > 0")


DETECTOR_NAMES = ("knn", "mahalanobis", "vicreg_terms", "autoencoder", "dcase_ae")
TERM_SCORES = ("invariance", "variance", "covariance", "loss")
# Views of vicreg_terms (training and scoring): the recipe's own, or the journal's crop-only views,
# normalised or not (spec §4). Applied to the recipe's augment section before any override.
VIEW_RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "crop": {"hflip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0},
    "crop_raw": {"hflip_p": 0.0, "jitter_p": 0.0, "grayscale_p": 0.0, "blur_p": 0.0, "solarize_p": 0.0,
                 "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)},
}


@dataclass(frozen=True)
class DetectConfig:
    """An anomaly detector (``viclab detect``): what it fits on, how it scores.

    ``knn``: mean L2 (or cosine, as L2 of unit vectors) distance to the ``k`` nearest normal
    representations. ``mahalanobis``: distance to the normal mean under the shrunk covariance
    (Ledoit-Wolf, or ``shrinkage``). ``vicreg_terms``: a frozen VICReg model; per image the
    invariance between ``views`` augmented views' projections and the image's contribution to
    the variance and covariance terms of the normal projections; ``score`` names the one that
    ranks. ``autoencoder``: per-image reconstruction error. The first three read an ``encoder``
    (a training run folder, a ``.safetensors`` encoder or ``random:BACKBONE``); without one,
    VICReg is trained on the normal images with ``recipe``.
    """

    detector: str = "knn"
    encoder: str | None = None
    k: int = 2
    cosine: bool = False
    shrinkage: float | None = None
    views: int = 8
    score: str = "invariance"
    fpr: float = 0.05  # the threshold's false-positive rate on held-out normal images
    batch_size: int = 500  # images per scoring pass
    seed: int = 0  # the scoring views
    # Scoring precision: auto = bf16 where the CPU or GPU computes it natively. On this project's AMX CPU
    # bf16 scored 1.9x (vicreg_terms) and 1.5x (mahalanobis) faster than fp32, AUROCs within 0.0003 (one-class
    # cat, benchmarks/detect_precision.py).
    precision: str = "auto"
    data: DetectDataConfig = field(default_factory=DetectDataConfig)
    recipe: Config = field(default_factory=lambda: PRESETS["cpu"])
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    dcase: DcaseConfig = field(default_factory=DcaseConfig)

    def __post_init__(self) -> None:
        _finite(self, "detect.")
        _check(self.detector in DETECTOR_NAMES,
               f"detect.detector={self.detector!r} is unknown; use {', '.join(DETECTOR_NAMES)}")
        _check(self.k >= 1, f"detect.k={self.k} must be >= 1")
        _check(self.shrinkage is None or 0 <= self.shrinkage <= 1,
               f"detect.shrinkage={self.shrinkage} must be in [0, 1] (or none: Ledoit-Wolf)")
        _check(self.views >= 2, f"detect.views={self.views} must be >= 2 (invariance compares views)")
        _check(self.score in TERM_SCORES, f"detect.score={self.score!r} is unknown; use {', '.join(TERM_SCORES)}")
        _check(0 <= self.fpr < 1, f"detect.fpr={self.fpr} must be in [0, 1)")
        _check(self.batch_size >= 2, f"detect.batch_size={self.batch_size} must be >= 2")
        _check(self.seed >= 0, f"detect.seed={self.seed} must be >= 0")
        _check(self.precision in PRECISIONS,
               f"detect.precision={self.precision!r} is unknown; use {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class StudyConfig:
    """The whole study of spec §3 (``viclab study``): every training and every evaluation.

    ``recipe`` trains VICReg (S1-S3, S8, A1-A3, C1-C3); the mu = 0 ablation (S4) is the
    same recipe with ``loss.var_weight = 0``; the neighbour-views model (S6) uses the
    recipe too, for ``neighbour_epochs`` epochs. Latent optimisation (S5) runs twice:
    ``latent`` (graph pairs, the correction) and the same with naive pairs for
    ``latent_naive_epochs`` epochs. The dataset and data folder of ``recipe`` apply to
    every stage.
    """

    preset: str = "exercise"
    recipe: Config = field(default_factory=Config)
    neighbour_k: int = 3
    neighbour_epochs: int = 1
    latent: LatentConfig = field(default_factory=LatentConfig)
    # Naive pairs cannot learn anything (invariance is identically 0): a few epochs show it.
    latent_naive_epochs: int = 30
    eigenmaps: EigenmapsConfig = field(default_factory=EigenmapsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    anomalies: str = "mnist"
    # Anomaly detection on sensor images (spec §4): one-class detection for these classes of the recipe's
    # dataset with every detector of viclab.detect.compare (the whole benchmark: benchmarks/detection.py).
    # The detectors' VICReg is the study's recipe trained for detect_epochs on each class's images.
    detect_classes: tuple[str, ...] = tuple(str(c) for c in range(10))
    detect_epochs: int = 5
    detect: DetectConfig = field(default_factory=DetectConfig)
    # Sound (spec §4), on the data folder's mimii/ and fsdd/: every detector on the sound_machines of MIMII
    # (one model per machine type, the `sound` recipe for sound_epochs, the DCASE baseline for its own 100),
    # VICReg on FSDD digits (the `fsdd` recipe for sound_probe_epochs) probed on held-out speakers, and
    # Griffin-Lim resynthesis. sound=false leaves the part out (a data folder without the sound sets).
    sound: bool = True
    sound_machines: tuple[str, ...] = ("fan", "slider")
    sound_epochs: int = 100
    sound_views: int = 8
    sound_autoencoder_epochs: int = 100
    sound_dcase_epochs: int = 100
    sound_probe_epochs: int = 10
    sound_held_out: tuple[str, ...] = ("theo", "yweweler")

    def __post_init__(self) -> None:
        _check(self.neighbour_k >= 1, f"study.neighbour_k={self.neighbour_k} must be >= 1")
        _check(self.neighbour_epochs >= 1, f"study.neighbour_epochs={self.neighbour_epochs} must be >= 1")
        _check(self.latent_naive_epochs >= 1, f"study.latent_naive_epochs={self.latent_naive_epochs} must be >= 1")
        _check(len(self.detect_classes) >= 1, "study.detect_classes needs at least one class")
        _check(self.detect_epochs >= 1, f"study.detect_epochs={self.detect_epochs} must be >= 1")
        for name in ("sound_epochs", "sound_autoencoder_epochs", "sound_dcase_epochs", "sound_probe_epochs"):
            _check(getattr(self, name) >= 1, f"study.{name}={getattr(self, name)} must be >= 1")
        _check(self.sound_views >= 2, f"study.sound_views={self.sound_views} must be >= 2")
        _check(not self.sound or len(self.sound_machines) >= 1 and len(self.sound_held_out) >= 1,
               "study.sound_machines and study.sound_held_out need at least one entry each (or study.sound=false)")
        _check(self.anomalies != self.recipe.data.dataset,
               f"study.anomalies={self.anomalies} is the dataset the study trains on, so it cannot serve as the "
               "anomalies; use another dataset or image folder, e.g. study.anomalies=mnist")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


STUDY_PRESETS: dict[str, StudyConfig] = {
    # Spec §2 and §3 exactly: the one to run on a GPU.
    "exercise": StudyConfig(),
    # Everything on a 2-core CPU in under a quarter of an hour: the cpu recipe for one epoch at the
    # previous preset's rate 2e-3 (4e-3 with the warm-up shortened to 0.2 epoch to fit one epoch blew up:
    # covariance term 95, probe 32.3%), so VICReg, mu = 0 and the neighbour model train equally long;
    # latent optimisation and the cluster t-SNE shortened (measured timings in the README).
    "cpu": StudyConfig(
        preset="cpu",
        recipe=replace(PRESETS["cpu"], train=replace(PRESETS["cpu"].train, epochs=1),
                       optim=replace(PRESETS["cpu"].optim, lr=2e-3, warmup_epochs=0.2)),
        latent=LatentConfig(epochs=15),
        latent_naive_epochs=5,
        eval=EvalConfig(tsne_points=5_000),
        # Detection at a budget of minutes: three classes, VICReg for 3 epochs on each class's 5,000 images,
        # 4 views per image, the autoencoder for 5 epochs (the full one-class table: benchmarks/detection.py).
        detect_classes=("airplane", "cat", "ship"),
        detect_epochs=3,
        detect=DetectConfig(views=4, autoencoder=AutoencoderConfig(epochs=5)),
        # Sound within about 8 minutes: VICReg 60 epochs per machine type (benchmarks/sound.py: 100), the
        # FSDD VICReg 6 epochs.
        sound_epochs=60,
        sound_probe_epochs=6,
    ),
}

_STUDY_SECTIONS = ("latent", "eigenmaps", "eval", "study", "detect")

def resolve_detect(overrides: list[str] | None = None, base: DetectConfig | None = None,
                   views: str | None = None, preset: str | None = None) -> DetectConfig:
    """A detector config: ``base`` (default :class:`DetectConfig`), its recipe replaced by the
    training ``preset`` if given (e.g. ``sound``), the view recipe ``views`` (:data:`VIEW_RECIPES`),
    then ``section.field=value`` overrides: ``detect.*``, ``data.*``, ``autoencoder.*`` and
    ``dcase.*`` for the detector; ``augment``, ``model``, ``loss``, ``optim``, ``train``, ``sound``,
    ``spec_views`` for its recipe."""
    cfg = base or DetectConfig()
    recipe = get_preset(preset) if preset is not None else cfg.recipe
    if views is not None:
        if views not in VIEW_RECIPES:
            raise ViclabError(f"unknown view recipe {views!r}; choose one of: {', '.join(VIEW_RECIPES)}")
        recipe = replace(recipe, augment=replace(recipe.augment, **VIEW_RECIPES[views]))
    mapping = parse_overrides(overrides or [])
    own = {k: mapping.pop(k) for k in ("detect", "data", "autoencoder", "dcase") if k in mapping}
    if mapping:
        recipe = apply_mapping(recipe, mapping, origin="the command line")
    cfg = _replace_plain(cfg, own.get("detect", {}), "detect")
    data = _replace_plain(cfg.data, own.get("data", {}), "data")
    ae = _replace_plain(cfg.autoencoder, own.get("autoencoder", {}), "autoencoder")
    dcase = _replace_plain(cfg.dcase, own.get("dcase", {}), "dcase")
    return replace(cfg, data=data, recipe=recipe, autoencoder=ae, dcase=dcase)


def detect_config_from_dict(d: dict[str, Any], origin: str) -> DetectConfig:
    """Rebuild a saved :class:`DetectConfig` (its ``config.json``)."""
    try:
        d = dict(d)
        recipe = Config.from_dict(d.pop("recipe"), origin=origin)
        data = _replace_plain(DetectDataConfig(), d.pop("data"), "data")
        ae = _replace_plain(AutoencoderConfig(), d.pop("autoencoder"), "autoencoder")
        dcase = _replace_plain(DcaseConfig(), d.pop("dcase"), "dcase")
        return replace(_replace_plain(DetectConfig(), d, "detect"), data=data, recipe=recipe, autoencoder=ae,
                       dcase=dcase)
    except (KeyError, TypeError, AttributeError) as e:
        raise ViclabError(f"{origin} is not a detector config ({e}); the folder is damaged") from None
    except ViclabError as e:  # a hand-edited value: name the file that holds it
        raise ViclabError(f"{origin}: {e} (edit the file back, or fit the detector again)") from None



def _replace_plain(obj: Any, values: dict[str, Any], prefix: str) -> Any:
    """``obj`` (a frozen dataclass) with the plain fields in ``values`` replaced, types coerced."""
    hints = _hints(type(obj))
    plain = {f.name for f in fields(obj) if not dataclasses.is_dataclass(hints[f.name]) and f.name != "preset"}
    for key in values:
        if key not in plain:
            raise ViclabError(f"unknown config key '{prefix}.{key}'; valid: "
                              + ", ".join(f"{prefix}.{k}" for k in sorted(plain)))
    return replace(obj, **{k: _coerce(v, hints[k], f"{prefix}.{k}") for k, v in values.items()})


def resolve_study(preset: str = "cpu", overrides: list[str] | None = None,
                  data_dir: str | None = None) -> StudyConfig:
    """A study preset, then ``section.field=value`` overrides, then the data folder.

    Sections ``data``, ``augment``, ``model``, ``loss``, ``optim``, ``train`` change the
    training recipe; ``latent.*``, ``eigenmaps.*`` and ``eval.*`` their configs;
    ``study.*`` the study's own fields (``study.neighbour_epochs=2``).
    """
    if preset not in STUDY_PRESETS:
        raise ViclabError(f"unknown study preset {preset!r}; choose one of: {', '.join(STUDY_PRESETS)}")
    study = STUDY_PRESETS[preset]
    mapping = parse_overrides(overrides or [])
    own = {k: mapping.pop(k) for k in _STUDY_SECTIONS if k in mapping}
    recipe = apply_mapping(study.recipe, mapping, origin="the command line") if mapping else study.recipe
    if data_dir:
        recipe = replace(recipe, data=replace(recipe.data, data_dir=data_dir))
    parts = {"latent": study.latent, "eigenmaps": study.eigenmaps, "eval": study.eval, "detect": study.detect}
    for name in parts:
        parts[name] = _replace_plain(parts[name], own.get(name, {}), name)
    study = _replace_plain(study, own.get("study", {}), "study")
    # One dataset and data folder for every stage.
    where = {"dataset": recipe.data.dataset, "data_dir": recipe.data.data_dir}
    # The detectors' VICReg: the study's recipe, trained study.detect_epochs on each class's images.
    detect = replace(parts["detect"], data=replace(parts["detect"].data, **where),
                     recipe=replace(recipe, train=replace(recipe.train, epochs=study.detect_epochs)))
    return replace(study, recipe=recipe, latent=replace(parts["latent"], **where),
                   eigenmaps=replace(parts["eigenmaps"], **where), eval=parts["eval"], detect=detect)
