"""Recipe files and the one resolver: a config is a recipe (``viclab/recipes/*.toml``), then a TOML file,
then ``section.field=value`` overrides, in that order, each applied by :func:`~viclab.config.override.override`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from importlib import resources
from typing import Any

from viclab.config.detect import DetectConfig, MonitorConfig, ScoreConfig
from viclab.config.eval import EigenmapsConfig, EvalConfig, LatentConfig
from viclab.config.override import load_toml, merge, override, parse_overrides
from viclab.config.study import StudyConfig, tie_stages
from viclab.config.train import Config, ResynthConfig, SplitConfig
from viclab.core.errors import ViclabError

# kind -> (schema, recipe-file prefix, recipe when none is named, how its own fields are addressed); a kind
# without recipe files starts from its schema. Sections a schema does not hold (``train.epochs`` for a
# detector) address its training ``recipe``.
_KINDS: dict[str, tuple[type, str | None, str, str]] = {
    "train": (Config, "", "exercise", ""),
    "detect": (DetectConfig, "detect", "detect", "detect."),
    "study": (StudyConfig, "study-", "cpu", "study."),
    "resynth": (ResynthConfig, None, "sound", "resynth."),  # preset: the training recipe whose sound.* it takes
    "eval": (EvalConfig, None, "", "eval."),
    "latent": (LatentConfig, None, "", "latent."),
    "eigenmaps": (EigenmapsConfig, None, "", "eigenmaps."),
    "score": (ScoreConfig, None, "", "score."),
    "monitor": (MonitorConfig, None, "", "monitor."),
    "split": (SplitConfig, None, "", "split."),
}
# The order recipes are listed in (help texts, error messages); files not named here follow, sorted.
_ORDER = ("exercise", "cpu", "vit", "fsdd", "sound")


def _recipe_dir() -> Any:
    return resources.files("viclab").joinpath("recipes")


@functools.cache
def recipe_names(kind: str) -> tuple[str, ...]:
    """The recipes of ``kind`` in ``viclab/recipes`` (``train``: ``cpu.toml``; ``study``: ``study-cpu.toml``)."""
    prefix = _KINDS[kind][1]
    stems = [f.name.removesuffix(".toml") for f in _recipe_dir().iterdir() if f.name.endswith(".toml")]
    if prefix:
        names = [s.removeprefix(prefix) for s in stems if s.startswith(prefix) and s != prefix]
    else:
        names = [s for s in stems if not any(s.startswith(p) for _, p, _, _ in _KINDS.values() if p)]
    return tuple(sorted(names, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)))


def _route(kind: str, mapping: dict[str, Any]) -> dict[str, Any]:
    """Section-addressed values (``detect.k``, ``train.epochs``) as the schema nests them (``k``, ``recipe.train``)."""
    schema, _, _, own = _KINDS[kind]
    if not own:
        return mapping
    names = {f.name for f in dataclasses.fields(schema)}
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if key == own[:-1] and isinstance(value, dict):
            part = value
        else:
            part = {key: value} if key in names or "recipe" not in names else {"recipe": {key: value}}
        out = merge(out, part)
    return out


@functools.cache
def _read(kind: str, name: str) -> Any:
    """The config of recipe file ``name`` of ``kind``, parsed once."""
    schema, prefix, _, own = _KINDS[kind]
    path = _recipe_dir().joinpath(f"{prefix}{name}.toml" if name != prefix else f"{name}.toml")
    return override(schema(), _route(kind, load_toml(path)), origin=f"recipe {path.name}", prefix=own)


def _recipe(kind: str, name: str) -> Any:
    """The recipe ``name`` of ``kind`` (``train``: ``recipes/NAME.toml``; ``study``: ``recipes/study-NAME.toml``)."""
    if name not in recipe_names(kind):
        what = "study preset" if kind == "study" else "preset"
        raise ViclabError(f"unknown {what} {name!r}; choose one of: {', '.join(recipe_names(kind))}")
    return _read(kind, name)


def get_preset(name: str) -> Config:
    """The training recipe ``name`` (``recipes/NAME.toml``)."""
    return _recipe("train", name)


def _start(kind: str, preset: str | None) -> Any:
    schema, _, default, _ = _KINDS[kind]
    if kind in ("train", "study"):
        return _recipe(kind, preset or default)
    if kind == "resynth":
        return ResynthConfig(sound=get_preset(preset or default).sound)
    if kind != "detect":
        return schema()
    detect = _read("detect", "detect")  # for a detector, ``preset`` names its network's training recipe
    return detect if preset is None else dataclasses.replace(detect, recipe=get_preset(preset))


def resolve(kind: str, preset: str | None = None, toml: str | None = None,
            overrides: Sequence[str | tuple[str, Any]] = (),
            base: Any = None) -> Any:
    """The config of ``kind``: a recipe, then a TOML file, then ``section.field=value`` overrides or
    ``(section.field, value)`` pairs (a command's flags), later wins.

    Args:
        kind: a key of ``_KINDS``: ``train`` (a :class:`Config`), ``detect``, ``study``, or one per other command.
        preset: the recipe (``recipes/*.toml``); else the TOML file's top-level ``preset``, else ``base``,
            else the kind's default (``exercise``; ``detect.toml``; ``study-cpu.toml``). For ``detect``
            it names the training recipe of the detector's network (``sound``).
        toml: a TOML file of ``[section]`` tables, as the overrides address them.
        overrides: ``section.field=value`` strings; for ``detect`` and ``study``, ``detect.k`` /
            ``study.neighbour_k`` address the config's own fields and sections it does not hold
            (``train.epochs``) its training ``recipe``.
        base: the config to start from when no preset is named (a run folder's own, to resume it).
    """
    if kind not in _KINDS:
        raise ViclabError(f"unknown config kind {kind!r}; use {', '.join(_KINDS)}")
    own = _KINDS[kind][3]
    values = load_toml(toml) if toml else {}
    preset = preset or values.pop("preset", None)  # the command line's preset wins over the file's
    values.pop("preset", None)
    cfg = base if base is not None and not preset else _start(kind, preset)
    if values:
        cfg = override(cfg, _route(kind, values), origin=str(toml), prefix=own)
    if overrides:
        cfg = override(cfg, _route(kind, parse_overrides(overrides)), origin="the command line", prefix=own)
    return tie_stages(cfg) if kind == "study" else cfg


# The shipped recipes by name, each file parsed once (a few milliseconds at import).
PRESETS: dict[str, Config] = {name: _recipe("train", name) for name in recipe_names("train")}
STUDY_PRESETS: dict[str, StudyConfig] = {name: _recipe("study", name) for name in recipe_names("study")}
