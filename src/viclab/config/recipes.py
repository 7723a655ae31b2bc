"""The study's config, which ties every kind together; recipe files and the one resolver: a config is a recipe
(``viclab/recipes/*.toml``), then a TOML file, then ``section.field=value`` overrides, in that order, each applied
by :func:`~viclab.config.override.override`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from viclab.config.detect import DetectConfig, MachineIdConfig, MonitorConfig, ScoreConfig
from viclab.config.eval import ANOMALIES, EigenmapsConfig, EvalConfig, LatentConfig
from viclab.config.override import at_least, check, load_toml, merge, override, parse_overrides
from viclab.config.train import Config, ResynthConfig, SplitConfig, ViewsConfig
from viclab.core.errors import ViclabError


@dataclass(frozen=True)
class StudyConfig:
    """The whole study of spec §3 (``viclab study``): every training and every evaluation.

    ``recipe`` trains VICReg (S1-S3, S8, A1-A3, C1-C3); the mu = 0 ablation (S4) is the same recipe with
    ``loss.var_weight = 0`` on the first ``no_variance_subset`` training images (0: all; evaluated on all of them);
    the neighbour-views model (S6) uses the recipe too, for ``neighbour_epochs`` epochs.
    Latent optimisation (S5) runs twice: ``latent`` (graph pairs, the correction) and the same with naive pairs for
    ``latent_naive_epochs`` epochs. The dataset and data folder of ``recipe`` apply to every stage.
    """

    preset: str = "exercise"
    recipe: Config = field(default_factory=Config)
    neighbour_k: int = ViewsConfig.k
    neighbour_epochs: int = 1
    # Collapse without the variance term shows within a few hundred steps: a budget can train mu = 0 on fewer images
    # than VICReg (0 = all). Not the neighbour model: a short VICReg run sits below its random init (the first
    # steps undo what random features know), so fewer steps would misstate what neighbours teach.
    no_variance_subset: int = 0
    latent: LatentConfig = field(default_factory=LatentConfig)
    latent_naive_epochs: int = 30  # naive pairs learn nothing (invariance is identically 0): a few epochs show it
    eigenmaps: EigenmapsConfig = field(default_factory=EigenmapsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    anomalies: str = ANOMALIES
    # Anomaly detection on sensor images (spec §4): one-class detection for these classes of the recipe's dataset
    # with every detector of viclab.detect.compare (the whole benchmark: benchmarks/detection.py). The detectors'
    # VICReg is the study's recipe trained for detect_epochs on each class's images.
    detect_classes: tuple[str, ...] = tuple(str(c) for c in range(10))
    detect_epochs: int = 5
    # knn and mahalanobis read every stage of their encoders, pooled, and so does the random-encoder floor: the
    # strongest untrained baseline (one-class CIFAR-10, random knn 64.2 -> 69.4 mean AUROC; docs/detection.md).
    detect: DetectConfig = field(default_factory=lambda: DetectConfig(layers="all"))
    # Sound (spec §4), on the data folder's mimii/ and fsdd/: every detector on the sound_machines of MIMII (one
    # model per machine type, the `sound` recipe for sound_epochs, the DCASE baseline for its own 100, the machine-ID
    # classifier for sound_machine_id_epochs), VICReg on
    # FSDD digits (the `fsdd` recipe for sound_probe_epochs) probed on held-out speakers, and Griffin-Lim
    # resynthesis. sound=false leaves the part out (a data folder without the sound sets).
    sound: bool = True
    sound_machines: tuple[str, ...] = ("fan", "slider")
    sound_epochs: int = 100
    sound_views: int = 8
    sound_autoencoder_epochs: int = 100
    sound_dcase_epochs: int = 100
    sound_machine_id_epochs: int = MachineIdConfig.epochs
    sound_probe_epochs: int = 10
    sound_held_out: tuple[str, ...] = ("theo", "yweweler")

    def __post_init__(self) -> None:
        at_least(self, "study.", 1, "neighbour_k", "neighbour_epochs", "latent_naive_epochs", "detect_epochs",
                 "sound_epochs", "sound_autoencoder_epochs", "sound_dcase_epochs", "sound_machine_id_epochs",
                 "sound_probe_epochs")
        at_least(self, "study.", 0, "no_variance_subset")
        check(len(self.detect_classes) >= 1, "study.detect_classes needs at least one class")
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


_RECIPES = resources.files("viclab").joinpath("recipes")
# kind -> its schema, whose own fields are addressed ``kind.field`` (a training Config's: by its sections).
# Sections a schema does not hold (``train.epochs`` for a detector) address its training ``recipe``.
_KINDS: dict[str, type] = {
    "train": Config, "detect": DetectConfig, "study": StudyConfig, "resynth": ResynthConfig, "eval": EvalConfig,
    "latent": LatentConfig, "eigenmaps": EigenmapsConfig, "score": ScoreConfig, "monitor": MonitorConfig,
    "split": SplitConfig,
}
# The kinds with recipe files, by file-name prefix; the others start from their schema.
_PREFIXES = {"train": "", "detect": "detect", "study": "study-"}
# The order recipes are listed in (help texts, error messages); files not named here follow, sorted.
_ORDER = ("exercise", "cpu", "cpu-bf16", "rotation", "vit", "fsdd", "sound")


@functools.cache
def recipe_names(kind: str) -> tuple[str, ...]:
    """The recipes of ``kind`` in ``viclab/recipes`` (``train``: ``cpu.toml``; ``study``: ``study-cpu.toml``)."""
    prefix = _PREFIXES[kind]
    stems = [f.name.removesuffix(".toml") for f in _RECIPES.iterdir() if f.name.endswith(".toml")]
    if prefix:
        names = [s.removeprefix(prefix) for s in stems if s.startswith(prefix) and s != prefix]
    else:
        names = [s for s in stems if not any(s.startswith(p) for p in _PREFIXES.values() if p)]
    return tuple(sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)))


def _apply(kind: str, cfg: Any, mapping: dict[str, Any], origin: str) -> Any:
    """``cfg`` overridden by ``mapping``, its section-addressed values (``detect.k``, ``train.epochs``) put where
    the schema nests them (``k``, ``recipe.train``)."""
    if kind == "train":
        return override(cfg, mapping, origin)
    names = {f.name for f in dataclasses.fields(_KINDS[kind])}
    routed: dict[str, Any] = {}
    for key, value in mapping.items():
        if key == kind and isinstance(value, dict):
            part = value
        else:
            part = {key: value} if key in names or "recipe" not in names else {"recipe": {key: value}}
        routed = merge(routed, part)
    return override(cfg, routed, origin, prefix=f"{kind}.")


@functools.cache
def _read(kind: str, name: str) -> Any:
    prefix = _PREFIXES[kind]
    path = _RECIPES.joinpath(f"{prefix}{name}.toml" if name != prefix else f"{name}.toml")
    return _apply(kind, _KINDS[kind](), load_toml(path), f"recipe {path.name}")


def _recipe(kind: str, name: str) -> Any:
    if name not in recipe_names(kind):
        what = "study preset" if kind == "study" else "preset"
        raise ViclabError(f"unknown {what} {name!r}; choose one of: {', '.join(recipe_names(kind))}")
    return _read(kind, name)


def get_preset(name: str) -> Config:
    """The training recipe ``name`` (``recipes/NAME.toml``)."""
    return _recipe("train", name)


def _start(kind: str, preset: str | None) -> Any:
    if kind in ("train", "study"):
        return _recipe(kind, preset or ("exercise" if kind == "train" else "cpu"))
    if kind == "resynth":  # ``preset``: the training recipe whose sound.* it takes
        return ResynthConfig(sound=get_preset(preset or "sound").sound)
    if kind != "detect":
        return _KINDS[kind]()
    detect = _read("detect", "detect")  # for a detector, ``preset`` names its network's training recipe
    return detect if preset is None else replace(detect, recipe=get_preset(preset))


def resolve(kind: str, preset: str | None = None, toml: str | None = None,
            overrides: Sequence[str | tuple[str, Any]] = (), base: Any = None) -> Any:
    """The config of ``kind``: a recipe, then a TOML file, then ``section.field=value`` overrides or
    ``(section.field, value)`` pairs (a command's flags), later wins.

    Args:
        kind: a key of ``_KINDS``: ``train`` (a :class:`Config`), ``detect``, ``study``, or one per other command.
        preset: the recipe (``recipes/*.toml``); else the TOML file's top-level ``preset``, else ``base``,
            else the kind's default (``exercise``; ``detect.toml``; ``study-cpu.toml``). For ``detect``
            it names the training recipe of the detector's network (``sound``).
        toml: a TOML file of ``[section]`` tables, as the overrides address them.
        overrides: ``section.field=value`` strings; for ``detect`` and ``study``, ``detect.k`` / ``study.neighbour_k``
            address the config's own fields and sections it does not hold (``train.epochs``) its training ``recipe``.
        base: the config to start from when no preset is named (a run folder's own, to resume it).
    """
    if kind not in _KINDS:
        raise ViclabError(f"unknown config kind {kind!r}; use {', '.join(_KINDS)}")
    values = load_toml(toml) if toml else {}
    file_preset = values.pop("preset", None)
    preset = preset or file_preset  # the command line's preset wins over the file's
    cfg = base if base is not None and not preset else _start(kind, preset)
    if values:
        cfg = _apply(kind, cfg, values, str(toml))
    if overrides:
        cfg = _apply(kind, cfg, parse_overrides(overrides), "the command line")
    return tie_stages(cfg) if kind == "study" else cfg


# The shipped recipes by name, each file parsed once (a few milliseconds at import).
PRESETS: dict[str, Config] = {name: _recipe("train", name) for name in recipe_names("train")}
STUDY_PRESETS: dict[str, StudyConfig] = {name: _recipe("study", name) for name in recipe_names("study")}
