"""The study's sound part (spec §4): machine sounds with every detector, spoken digits probed, Griffin-Lim.

Two stages. ``sound_machines``: DCASE 2020 Task 2's protocol on the data folder's MIMII sample
(:func:`viclab.detect.protocols.machine_sounds`), ROC curves per machine type, a grid of normal and abnormal
spectrograms, and an abnormal clip resynthesised from its log-mel spectrogram and from the convolutional autoencoder's
reconstruction of it. ``sound_fsdd``: VICReg on FSDD digits with speakers held out, the linear probe against a
random-init encoder, a grid of one spectrogram per digit, and a spoken digit resynthesised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import Config, DetectConfig, StudyConfig, get_preset, resolve
from viclab.core.context import Context
from viclab.core.runtime import select_runtime
from viclab.data import load_sound, resolve_data_dir, spectrograms
from viclab.data.sounds import sound_root
from viclab.detect.api import scoring_runtime
from viclab.detect.protocols import machine_ids, machine_sounds, probe_digits
from viclab.detect.resynth import resynthesise
from viclab.plot import figures
from viclab.represent.encode import eval_runtime

ROC_DETECTORS = ("vicreg_terms:invariance", "knn", "mahalanobis", "autoencoder", "dcase_ae", "machine_id",
                 "random-encoder knn")


def _resynth(clip: Path, folder: Path, ctx: Context, **kw: Any) -> dict[str, Any]:
    result = resynthesise(clip, folder, ctx=ctx, **kw)
    return {"clip": clip.name, "folder": folder.name, **{k: result[k] for k in ("vs_original", "vs_given_magnitude",
                                                                                "seconds", "rate")}}


def _machines_config(cfg: StudyConfig) -> DetectConfig:
    """The detectors of the machine-sound stage: the ``sound`` recipe, the study's budget."""
    return resolve("detect", "sound", overrides=[
        # at most 10 clips per machine ID and condition: the MIMII sample's size, whatever the download's
        "data.dataset=mimii", f"data.data_dir={cfg.recipe.data.data_dir or ''}", "sound.max_files=10",
        f"train.epochs={cfg.sound_epochs}", f"train.min_steps={cfg.recipe.train.min_steps}",  # the study's floor
        f"detect.views={cfg.sound_views}", f"autoencoder.epochs={cfg.sound_autoencoder_epochs}",
        f"dcase.epochs={cfg.sound_dcase_epochs}", f"machine_id.epochs={cfg.sound_machine_id_epochs}"])


def _fsdd_recipe(cfg: StudyConfig) -> Config:
    """VICReg of the spoken-digit stage: the ``fsdd`` recipe for ``study.sound_probe_epochs``."""
    recipe = get_preset("fsdd")
    return replace(recipe, data=replace(recipe.data, data_dir=cfg.recipe.data.data_dir),
                   train=replace(recipe.train, epochs=cfg.sound_probe_epochs, min_steps=cfg.recipe.train.min_steps))


def sound_runtimes(cfg: StudyConfig) -> dict[str, dict[str, Any]]:
    """Per sound stage, where and how precisely it trains, scores and encodes (``auto`` resolved on
    this machine): part of the stage's fingerprint, as these change its numbers."""
    base, recipe = _machines_config(cfg), _fsdd_recipe(cfg)
    return {"sound_machines": {"train": select_runtime(base.recipe.train.device, base.recipe.train.precision).key,
                               "score": scoring_runtime(base).key},
            "sound_fsdd": {"train": select_runtime(recipe.train.device, recipe.train.precision).key,
                           "encode": eval_runtime().key}}


def machines_stage(cfg: StudyConfig, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    """The stage's ``run(folder)``: every detector per machine type, figures and resynthesis."""
    def run(folder: Path) -> dict[str, Any]:
        base = _machines_config(cfg)
        tests: dict[str, Any] = {}

        def draw(machine: str, ev: dict[str, Any]) -> None:
            test = tests[machine] = ev["test"]
            names = [n for n in ROC_DETECTORS if n in ev["scores"]]
            figures.roc_pr_png([(n, test.labels, ev["scores"][n]) for n in names],
                               f"{machine}: {int((test.labels == 0).sum())} normal vs {int((test.labels == 1).sum())} "
                               "abnormal test clips, all machine IDs", folder / f"roc_{machine}.png")

        result = machine_sounds(base, cfg.sound_machines, folder / "detectors", ctx=ctx, on_machine=draw)
        first = cfg.sound_machines[0]
        test = tests[first]
        ids = machine_ids(test)
        rows = []
        for i in sorted(set(ids)):
            picks = [j for label in (0, 1) for j in np.flatnonzero((ids == i) & (test.labels == label))[:2]]
            rows.append((i, [test.data.images[j] for j in picks],
                         ["normal" if test.labels[j] == 0 else "abnormal" for j in picks]))
        figures.image_grid_png(rows, f"{first}: log-mel spectrograms of test clips, two normal and two abnormal per "
                                     "machine ID (10 s, 128 mel bands)", folder / "spectrograms.png",
                               test.data.modality)
        odd = int(np.flatnonzero(test.labels == 1)[0])
        clip = sound_root("mimii", base.data.data_dir or resolve_data_dir(None)) / test.origin[odd].split(":", 1)[1]
        resynth = {"plain": _resynth(clip, folder / "resynth_plain", ctx),
                   "autoencoder": _resynth(clip, folder / "resynth_autoencoder", ctx,
                                           detector=folder / "detectors" / first / "autoencoder")}
        return {"machines": result, "first_machine": first, "resynth": resynth,
                "recipe": {"epochs": cfg.sound_epochs, "views": cfg.sound_views,
                           "autoencoder_epochs": cfg.sound_autoencoder_epochs, "dcase_epochs": cfg.sound_dcase_epochs,
                           "machine_id_epochs": cfg.sound_machine_id_epochs}}

    return run


def fsdd_stage(cfg: StudyConfig, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    """The stage's ``run(folder)``: VICReg on FSDD probed on held-out speakers, figures, resynthesis."""
    def run(folder: Path) -> dict[str, Any]:
        recipe = _fsdd_recipe(cfg)
        probe = probe_digits(recipe, cfg.sound_held_out, folder, ctx=ctx)
        sound = replace(recipe.sound, split="speaker", test_speakers=tuple(cfg.sound_held_out))
        root = cfg.recipe.data.data_dir or resolve_data_dir(None)
        clips = load_sound("fsdd", "test", root, sound)
        spec = spectrograms(clips, sound)
        picks = [int(np.flatnonzero(clips.labels.numpy() == d)[0]) for d in range(len(clips.classes))]
        captions = [f"'{clips.classes[clips.labels[j]]}' {clips.attrs['speaker'][j]}" for j in picks]
        figures.image_grid_png([("digit", [spec.images[j] for j in picks], captions)],
                               "FSDD: log-mel spectrograms of one held-out speaker's clip per digit (1 s, 64 mel "
                               "bands)", folder / "spectrograms.png", spec.modality)
        clip = sound_root("fsdd", root) / clips.origin[picks[len(picks) // 2]]
        resynth = _resynth(clip, folder / "resynth", ctx, sound=recipe.sound)
        return {"probe": probe, "resynth": resynth, "epochs": cfg.sound_probe_epochs}

    return run
