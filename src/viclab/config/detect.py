"""Anomaly detection (``viclab detect``): the data a detector fits and scores, its baselines, the detector."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from viclab.config.override import PRECISIONS, at_least, check, finite, known, override
from viclab.config.train import Config
from viclab.core.errors import ViclabError


@dataclass(frozen=True)
class DetectDataConfig:
    """Which images are normal and which are tested (spec §4; §5's folder convention).

    Either a registered ``dataset`` whose ``normal_classes`` (names or indices, e.g. ("3", "5") or ("cat", "dog");
    () = all) are normal and whose ``anomaly_classes`` (() = every class that is not normal) give the anomalous test
    images, or anomalib's ``Folder`` convention: a ``normal`` folder, an ``abnormal`` folder and an optional
    ``normal_test`` folder; without it a seeded ``test_share`` of the normal images is held out as normal test
    data. ``anomalies``: another dataset or folder whose test images are all anomalous (e.g. ``mnist``) is added
    to the test set.
    """

    dataset: str = "cifar10"
    normal_classes: tuple[str, ...] = ()
    anomaly_classes: tuple[str, ...] = ()
    normal: str | None = None
    abnormal: str | None = None
    normal_test: str | None = None
    test_share: float = 0.2
    holdout: float = 0.1  # normal training images kept out of fitting: the threshold at detect.fpr is set on them
    anomalies: str | None = None
    data_dir: str | None = None
    size: int = 32  # images of any size are resized to size x size
    seed: int = 0  # the held-out splits

    def __post_init__(self) -> None:
        finite(self, "data.")
        check(0 < self.test_share < 1, f"data.test_share={self.test_share} must be in (0, 1)")
        check(0 <= self.holdout < 1, f"data.holdout={self.holdout} must be in [0, 1)")
        check(self.size > 0, f"data.size={self.size} must be > 0")
        at_least(self, "data.", 0, "seed")
        check(self.normal is not None or self.normal_test is None,
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
        finite(self, "autoencoder.")
        check(len(self.widths) >= 1 and min(self.widths) >= 1, "autoencoder.widths needs positive widths")
        at_least(self, "autoencoder.", 1, "latent", "epochs", "batch_size")
        check(self.lr > 0, f"autoencoder.lr={self.lr} must be > 0")


@dataclass(frozen=True)
class DcaseConfig:
    """The DCASE 2020 Task 2 baseline (spec §5), for sound: a dense autoencoder over ``context`` consecutive log-mel
    frames, ``depth`` hidden layers of ``hidden`` units each side of a ``bottleneck`` code."""

    context: int = 5
    hidden: int = 128
    bottleneck: int = 8
    depth: int = 4
    epochs: int = 100
    batch_size: int = 512
    lr: float = 1e-3
    seed: int = 0

    def __post_init__(self) -> None:
        finite(self, "dcase.")
        at_least(self, "dcase.", 1, "context", "hidden", "bottleneck", "depth", "epochs", "batch_size")
        check(self.lr > 0, f"dcase.lr={self.lr} must be > 0")


@dataclass(frozen=True)
class MachineIdConfig:
    """The machine-ID detector for sounds, DCASE 2020 Task 2's winning recipe (self-supervised classification of the
    machine ID from normal clips only; Giri et al. 2020, STgram-MFN of Liu et al. 2022): a spectrogram CNN learns to
    name each normal clip's machine ID from a window of ``window`` log-mel frames (a random window per clip and step);
    a clip scores the mean, over its windows every ``hop`` frames, of the negative log-probability of its own ID."""

    window: int = 64  # about 2 s of a 16 kHz clip at hop_length 512
    hop: int = 32
    epochs: int = 200  # one step per epoch on the MIMII sample's 18 clips of a machine type
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        finite(self, "machine_id.")
        at_least(self, "machine_id.", 1, "window", "hop", "epochs")
        at_least(self, "machine_id.", 2, "batch_size")
        check(self.lr > 0, f"machine_id.lr={self.lr} must be > 0")


# VICReg's three unweighted terms (losses.VICRegTerms, below which they are named here), and what vicreg_terms can
# rank by: a term, or their weighted sum.
TERMS = ("invariance", "variance", "covariance")
TERM_SCORES = (*TERMS, "loss")
# Views of vicreg_terms (training and scoring): the recipe's own, or the journal's crop-only views, normalised or
# not (spec §4), as overrides applied to the recipe before the user's own.
_CROP = tuple(f"augment.{p}=0" for p in ("hflip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"))
VIEW_RECIPES = {"default": (), "crop": _CROP, "crop_raw": (*_CROP, "augment.mean=0,0,0", "augment.std=1,1,1")}


def view_overrides(views: str | None) -> list[str]:
    """The ``augment.*`` overrides of a view recipe (:data:`VIEW_RECIPES`; ``None``: none)."""
    if views is not None and views not in VIEW_RECIPES:
        raise ViclabError(f"unknown view recipe {views!r}; choose one of: {', '.join(VIEW_RECIPES)}")
    return list(VIEW_RECIPES[views or "default"])


@dataclass(frozen=True)
class MonitorConfig:
    """VICReg's terms over a stream of batches (``viclab detect monitor``): ``stream`` is ``kind:batches, ...`` of
    normal and anomalous test images, ``batch_size`` images each; ``seed`` draws the images and views."""

    stream: str = "normal:20,anomalous:5,normal:10,anomalous:5"
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class ScoreConfig:
    """Scoring fitted detectors (``viclab detect score``)."""

    top: int = 16  # most anomalous images shown per detector
    fpr: float | None = None  # the thresholds' false-positive rate on held-out normal images (None: detect.fpr)

    def __post_init__(self) -> None:
        check(self.top >= 1, f"--top {self.top} must be >= 1")


def check_detector(name: str, detectors: Collection[str]) -> None:
    """``name`` is one of the registered ``detectors`` (the registry lives in :mod:`viclab.detect`)."""
    check(name in detectors, f"detect.detector={name!r} is unknown; use {', '.join(detectors)}")


@dataclass(frozen=True)
class DetectConfig:
    """An anomaly detector (``viclab detect``; each of :data:`viclab.detect.DETECTORS` reads the fields it needs).

    ``knn``, ``mahalanobis`` and ``vicreg_terms`` read an ``encoder`` (a training run folder, a ``.safetensors``
    encoder or ``random:BACKBONE``); without one, VICReg is trained on the normal images with ``recipe`` (the schema
    default here; ``resolve("detect")`` fills it from recipes/detect.toml).
    """

    detector: str = "knn"
    encoder: str | None = None
    k: int = 2  # knn: neighbours averaged
    cosine: bool = False  # knn: L2 of unit vectors
    mean_shift: bool = False  # knn: L2 of unit vectors centred on the normal mean and normalised again (cosine)
    layers: str = "last"  # knn, mahalanobis: the encoder's output, or "all": every stage pooled (represent.layers)
    shrinkage: float | None = None  # mahalanobis: the covariance's shrinkage (None: Ledoit-Wolf)
    views: int = 8  # vicreg_terms: augmented views per image
    score: str = "invariance"  # vicreg_terms: the term that ranks (or their weighted sum, "loss")
    fpr: float = 0.05  # the threshold's false-positive rate on held-out normal images
    batch_size: int = 500  # images per scoring pass
    seed: int = 0  # the scoring views
    precision: str = "auto"  # scoring: bf16 where the CPU or GPU computes it natively (measured: docs/recipes.md)
    data: DetectDataConfig = field(default_factory=DetectDataConfig)
    recipe: Config = field(default_factory=Config)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    dcase: DcaseConfig = field(default_factory=DcaseConfig)
    machine_id: MachineIdConfig = field(default_factory=MachineIdConfig)

    def __post_init__(self) -> None:
        finite(self, "detect.")
        at_least(self, "detect.", 1, "k")
        check(self.shrinkage is None or 0 <= self.shrinkage <= 1,
               f"detect.shrinkage={self.shrinkage} must be in [0, 1] (or none: Ledoit-Wolf)")
        check(self.views >= 2, f"detect.views={self.views} must be >= 2 (invariance compares views)")
        known(self, "detect.", "score", TERM_SCORES)
        known(self, "detect.", "layers", ("last", "all"), "'last' or 'all'")
        check(0 <= self.fpr < 1, f"detect.fpr={self.fpr} must be in [0, 1)")
        at_least(self, "detect.", 2, "batch_size")
        at_least(self, "detect.", 0, "seed")
        known(self, "detect.", "precision", PRECISIONS)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str, detectors: Collection[str]) -> DetectConfig:
        """Rebuild a saved detector's config (its ``config.json``) by the one override walk; ``detectors``:
        the registered names (:data:`viclab.detect.DETECTORS`)."""
        missing = [k for k in ("recipe", "data", "autoencoder", "dcase") if k not in d]
        if missing:
            raise ViclabError(f"{origin} is not a detector config ({missing[0]!r}); the folder is damaged")
        try:
            cfg = override(cls(), d, origin, prefix="detect.")
            check_detector(cfg.detector, detectors)
            return cfg
        except ViclabError as e:  # a hand-edited value: name the file that holds it
            raise ViclabError(f"{origin}: {e} (edit the file back, or fit the detector again)") from None
