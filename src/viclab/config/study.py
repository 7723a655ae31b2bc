"""The whole study of spec §3 (``viclab study``): every training and every evaluation, one dataset for all."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from viclab.config.detect import DetectConfig
from viclab.config.eval import ANOMALIES, EigenmapsConfig, EvalConfig, LatentConfig
from viclab.config.override import at_least, check
from viclab.config.train import Config, ViewsConfig


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
    neighbour_k: int = ViewsConfig.k
    neighbour_epochs: int = 1
    latent: LatentConfig = field(default_factory=LatentConfig)
    # Naive pairs cannot learn anything (invariance is identically 0): a few epochs show it.
    latent_naive_epochs: int = 30
    eigenmaps: EigenmapsConfig = field(default_factory=EigenmapsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    anomalies: str = ANOMALIES
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
        at_least(self, "study.", 1, "neighbour_k", "neighbour_epochs", "latent_naive_epochs")
        check(len(self.detect_classes) >= 1, "study.detect_classes needs at least one class")
        at_least(self, "study.", 1, "detect_epochs", "sound_epochs", "sound_autoencoder_epochs", "sound_dcase_epochs",
                 "sound_probe_epochs")
        at_least(self, "study.", 2, "sound_views")
        check(not self.sound or len(self.sound_machines) >= 1 and len(self.sound_held_out) >= 1,
               "study.sound_machines and study.sound_held_out need at least one entry each (or study.sound=false)")
        check(self.anomalies != self.recipe.data.dataset,
               f"study.anomalies={self.anomalies} is the dataset the study trains on, so it cannot serve as the "
               "anomalies; use another dataset or image folder, e.g. study.anomalies=mnist")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def tie_stages(study: StudyConfig) -> StudyConfig:
    """One dataset and data folder for every stage; the detectors' VICReg is the study's recipe trained
    ``detect_epochs`` on each class's images."""
    recipe = study.recipe
    where = {"dataset": recipe.data.dataset, "data_dir": recipe.data.data_dir}
    detect = replace(study.detect, data=replace(study.detect.data, **where),
                     recipe=replace(recipe, train=replace(recipe.train, epochs=study.detect_epochs)))
    return replace(study, latent=replace(study.latent, **where), eigenmaps=replace(study.eigenmaps, **where),
                   detect=detect)
