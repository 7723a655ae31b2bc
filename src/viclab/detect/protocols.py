"""The sound protocols of spec §4 and §5, shared by ``benchmarks/sound.py`` and the study: DCASE 2020
Task 2's per machine type (:func:`machine_sounds`), FSDD one digit normal (:func:`one_digit`), one speaker
held out as the anomaly (:func:`held_out_speaker`), and a linear probe on FSDD digits (:func:`probe_digits`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import Config, DetectConfig
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.metrics import auroc_interval
from viclab.detect import compare
from viclab.detect.data import TestSet
from viclab.engine import train
from viclab.eval import linear_probe
from viclab.models import fit_standardizers
from viclab.represent.encode import Representations, Source, load_source, representations, state_sha256


def _with_sound(cfg: DetectConfig, **sound: Any) -> DetectConfig:
    recipe = dataclasses.replace(cfg.recipe, sound=dataclasses.replace(cfg.recipe.sound, **sound))
    return dataclasses.replace(cfg, recipe=recipe)


def machine_ids(test: TestSet) -> np.ndarray:
    """``(M,)`` each test row's machine ID (``id_00``), as the MIMII or DCASE loader read it from the path."""
    ids = test.data.machine_ids()
    if ids is None:
        raise ValueError("the test rows carry no machine ID; machine IDs come with MIMII or DCASE data")
    return ids


def machine_sounds(base: DetectConfig, machines: Sequence[str], folder: Path, ctx: Context = DEFAULT_CONTEXT,
                   on_machine: Callable[[str, dict[str, Any]], None] | None = None,
                   detectors: Sequence[str] | None = None) -> dict[str, Any]:
    """DCASE 2020 Task 2's protocol on a MIMII (``data.dataset=mimii``) or DCASE layout: per machine type,
    every detector fitted on the normal training clips of all its IDs (one model per type, as the DCASE
    baseline), tested per ID: AUC and pAUC (FPR <= 0.1) per ID and per type, with bootstrap intervals.

    Args:
        base: the detector config (data.dataset, the sound split settings, the recipe).
        machines: machine types, one model each.
        folder: where the detectors go (``folder/<machine>/<detector>``).
        on_machine: sees each type's :func:`~viclab.detect.compare.evaluate` output.
        detectors: only these (:func:`~viclab.detect.compare.fit_all`'s names; default: every one).

    Returns:
        ``{machine: {"ids", "per_id": {detector: {id: {auroc, pauc, ...}}}, "all": {detector: metrics
        with a 95% bootstrap interval}, "mean_id_auroc": {detector: mean}, "seconds", "fit", "test"}}``.
    """
    def summarise(machine: str, ev: dict[str, Any]) -> dict[str, Any]:
        test = ev["test"]
        ids = machine_ids(test)
        per_id = {n: compare.by_group(ids, test.labels, scores) for n, scores in ev["scores"].items()}
        return {"ids": sorted(set(ids)), "per_id": per_id, "all": _with_intervals(ev),
                "mean_id_auroc": {n: float(np.mean([m["auroc"] for m in v.values()])) for n, v in per_id.items()},
                "mean_id_pauc": {n: float(np.mean([m["pauc"] for m in v.values()])) for n, v in per_id.items()},
                "test": compare.label_counts(test.labels),
                "fit_seconds": {n: m["fit_seconds"] for n, m in ev["metrics"].items()},
                "score_seconds": {n: m["score_seconds"] for n, m in ev["metrics"].items()}}

    normal = dataclasses.replace(base, data=dataclasses.replace(base.data, normal_classes=("normal",)))
    return compare.fit_every_detector(
        ((m, _with_sound(normal, machines=(m,)), folder / m) for m in machines), summarise,
        lambda m, r: f"{m}: " + "  ".join(f"{n} {v:.3f}" for n, v in r["mean_id_auroc"].items())
        + f"  ({r['seconds']:.0f}s)", ctx, on_machine, detectors)


def _with_intervals(ev: dict[str, Any]) -> dict[str, Any]:
    """Each detector's metrics of an evaluation with its AUROC's 95% bootstrap interval."""
    test = ev["test"]
    return {n: {**m, "auroc_interval": list(auroc_interval(test.labels, ev["scores"][n]))}
            for n, m in ev["metrics"].items()}


def one_digit(base: DetectConfig, digits: Sequence[str], folder: Path,
              ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """FSDD one-class: per digit, every detector fitted on that digit's training clips, tested on all
    test clips (that digit normal, the other nine anomalous); :func:`compare.one_class`."""
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, dataset="fsdd"))
    return compare.one_class(cfg, digits, folder, ctx)


def held_out_speaker(base: DetectConfig, speaker: str, speakers: Sequence[str], folder: Path,
                     ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """FSDD with speakers as classes: every detector fitted on the other ``speakers``' training clips,
    tested on the test clips of all (``speaker``'s anomalous)."""
    normal = tuple(s for s in speakers if s != speaker)
    cfg = _with_sound(dataclasses.replace(base, data=dataclasses.replace(
        base.data, dataset="fsdd", normal_classes=normal, anomaly_classes=(speaker,))), label="speaker")
    return compare.fit_every_detector(
        [(speaker, cfg, folder)],
        lambda _, ev: {"speaker": speaker, "normal_speakers": list(normal), "metrics": _with_intervals(ev),
                       "test": compare.label_counts(ev["test"].labels)},
        lambda _, r: f"held-out speaker {speaker}: "
        + "  ".join(f"{n} {m['auroc']:.3f}" for n, m in r["metrics"].items()), ctx)[speaker]


def _probe(source: Source) -> tuple[dict[str, Any], Representations, Representations]:
    """A linear probe on ``source``'s FSDD train -> test representations: ``({top1, top5, seconds}, train, test)``."""
    t0 = time.perf_counter()
    ctx = dataclasses.replace(QUIET, data_dir=source.config.data.data_dir)
    train, test = (representations(source, split, "fsdd", ctx=ctx) for split in ("train", "test"))
    result = linear_probe(train.features, train.labels, test.features, test.labels)
    return {"top1": result.top1, "top5": result.top5, "seconds": time.perf_counter() - t0}, train, test


def probe_digits(recipe: Config, held_out: Sequence[str], folder: Path,
                 ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Sound classification on FSDD digits, speakers held out: VICReg trained on the other speakers' clips
    (``recipe``), then a linear probe trained on their representations and tested on the held-out speakers' clips;
    the same probe on a random-init encoder (its input standardisation fitted on the training clips) as the floor.

    Returns:
        ``{"vicreg": {top1, top5}, "random": {top1, top5}, "train_clips", "test_clips", "seconds": {...}}``.
    """
    sound = dataclasses.replace(recipe.sound, split="speaker", test_speakers=tuple(held_out), label="class")
    cfg = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dataset="fsdd"), sound=sound)
    t0 = time.perf_counter()
    run = folder / "vicreg"
    if not (run / "encoder.safetensors").exists():
        train(cfg, run, resume=(run / "config.json").exists(), ctx=ctx)
    t_train = time.perf_counter() - t0
    out: dict[str, Any] = {"held_out_speakers": list(held_out)}
    # Both encoders read the clips (from its data root) through this probe's sound settings (the held-out speakers).
    out["vicreg"], train_reps, test_reps = _probe(dataclasses.replace(load_source(run), config=cfg))
    floor = load_source(f"random:{cfg.model.backbone}", seed=cfg.train.seed)
    fit_standardizers(floor.module, train_reps.data.images)  # the floor sees standardised spectrograms too
    # Keyed by its fitted state: the standardisation is part of what it computes.
    out["random"], _, _ = _probe(dataclasses.replace(floor, config=cfg, weights_sha256=state_sha256(floor.module)))
    out["train_clips"], out["test_clips"] = len(train_reps.labels), len(test_reps.labels)
    out["train_seconds"] = t_train
    ctx.echo(f"FSDD digits, speakers {', '.join(held_out)} held out: linear probe top-1 VICReg "
             f"{out['vicreg']['top1']:.1%} vs random init {out['random']['top1']:.1%}")
    return out
