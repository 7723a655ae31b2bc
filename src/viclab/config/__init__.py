"""Typed configuration: frozen dataclasses (one module per concern, validation beside them), one override, recipes.

A config is resolved by :func:`resolve` from a recipe file (``viclab/recipes/*.toml``), then a TOML file,
then ``section.field=value`` overrides, in that order. Every run writes the resolved result as JSON.
"""

from viclab.config.detect import (
    VIEW_RECIPES,
    AutoencoderConfig,
    DcaseConfig,
    DetectConfig,
    DetectDataConfig,
    MachineIdConfig,
    MonitorConfig,
    ScoreConfig,
    check_detector,
    view_overrides,
)
from viclab.config.eval import ANOMALIES, EVAL_DEFAULTS, EigenmapsConfig, EvalConfig, LatentConfig
from viclab.config.override import load_toml
from viclab.config.recipes import PRESETS, STUDY_PRESETS, StudyConfig, get_preset, resolve
from viclab.config.train import (
    AugmentConfig,
    Config,
    DataConfig,
    LossConfig,
    ModelConfig,
    ResynthConfig,
    SoundConfig,
    SpecViewsConfig,
    SplitConfig,
    TrainConfig,
    ViewsConfig,
)

__all__ = [
    "ANOMALIES", "EVAL_DEFAULTS", "PRESETS", "STUDY_PRESETS", "VIEW_RECIPES", "AugmentConfig", "AutoencoderConfig",
    "Config", "DataConfig", "DcaseConfig", "DetectConfig", "DetectDataConfig", "EigenmapsConfig", "EvalConfig",
    "LatentConfig", "LossConfig", "MachineIdConfig", "ModelConfig", "MonitorConfig", "ResynthConfig", "ScoreConfig",
    "SoundConfig", "SpecViewsConfig", "SplitConfig", "StudyConfig", "TrainConfig", "ViewsConfig", "check_detector",
    "get_preset", "load_toml", "resolve", "view_overrides",
]
