"""The sound protocols of spec §4 and §5, shared by ``benchmarks/sound.py`` and the study.

- :func:`machine_sounds`: DCASE 2020 Task 2's protocol on MIMII (or DCASE) data: per machine type,
  every detector fitted on the normal training clips of all its machine IDs (one model per type,
  as the DCASE baseline), tested per ID on its held-out normal clips and all its abnormal ones:
  AUC and pAUC (FPR <= 0.1) per ID and per type, with bootstrap intervals (the sets are small).
- :func:`one_digit`: FSDD, one digit normal against the other nine (the one-class protocol).
- :func:`held_out_speaker`: FSDD, five speakers normal, the sixth the anomaly.
- :func:`probe_digits`: VICReg on FSDD digits with speakers held out of training, a linear probe
  (top-1/top-5) on its representations against a random-init encoder.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import Config, DetectConfig
from viclab.core.metrics import auroc_interval, detection_metrics
from viclab.data import load_inputs
from viclab.detect import compare
from viclab.engine import train
from viclab.eval import linear_probe
from viclab.models import fit_standardizers
from viclab.represent.encode import encode, load_source


def _quiet(_line: str) -> None:
    pass


def _with_sound(cfg: DetectConfig, **sound: Any) -> DetectConfig:
    recipe = dataclasses.replace(cfg.recipe, sound=dataclasses.replace(cfg.recipe.sound, **sound))
    return dataclasses.replace(cfg, recipe=recipe)


def machine_id(origin: str) -> str:
    """``mimii:-6_dB_fan/fan/id_00/normal/00000001.wav`` or ``dcase:fan/test/anomaly_id_00_0.wav`` -> ``id_00``."""
    found = re.search(r"id_\d+", origin)
    if found is None:
        raise ValueError(f"no machine ID in {origin!r}")
    return found.group(0)


def machine_sounds(base: DetectConfig, machines: Sequence[str], folder: Path, progress: bool = False,
                   echo: Callable[[str], None] = print,
                   on_machine: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """DCASE 2020 Task 2's protocol on a MIMII (``data.dataset=mimii``) or DCASE layout.

    Args:
        base: the detector config (data.dataset, the sound split settings, the recipe).
        machines: machine types, one model each.
        folder: where the detectors go (``folder/<machine>/<detector>``).
        on_machine: sees each type's :func:`~viclab.detect.compare.evaluate` output.

    Returns:
        ``{machine: {"ids", "per_id": {detector: {id: {auroc, pauc, ...}}}, "all": {detector: metrics
        with a 95% bootstrap interval}, "mean_id_auroc": {detector: mean}, "seconds", "fit", "test"}}``.
    """
    out = {}
    for machine in machines:
        t0 = time.perf_counter()
        cfg = _with_sound(dataclasses.replace(base, data=dataclasses.replace(base.data, normal_classes=("normal",))),
                          machines=(machine,))
        folders = compare.fit_all(cfg, folder / machine, progress=progress, echo=echo)
        ev = compare.evaluate(folders, progress=progress)
        if on_machine is not None:
            on_machine(machine, ev)
        test = ev["test"]
        ids = np.array([machine_id(o) for o in test.origin])
        per_id: dict[str, dict[str, Any]] = {}
        overall: dict[str, Any] = {}
        for name, scores in ev["scores"].items():
            per_id[name] = {i: detection_metrics(test.labels[ids == i], scores[ids == i]) for i in sorted(set(ids))}
            low, high = auroc_interval(test.labels, scores)
            overall[name] = {**ev["metrics"][name], "auroc_interval": [low, high]}
        seconds = time.perf_counter() - t0
        out[machine] = {
            "ids": sorted(set(ids)), "per_id": per_id, "all": overall,
            "mean_id_auroc": {n: float(np.mean([m["auroc"] for m in v.values()])) for n, v in per_id.items()},
            "mean_id_pauc": {n: float(np.mean([m["pauc"] for m in v.values()])) for n, v in per_id.items()},
            "test": {"normal": int((test.labels == 0).sum()), "anomalous": int((test.labels == 1).sum())},
            "fit_seconds": {n: m["fit_seconds"] for n, m in ev["metrics"].items()},
            "score_seconds": {n: m["score_seconds"] for n, m in ev["metrics"].items()},
            "seconds": seconds,
        }
        echo(f"{machine}: " + "  ".join(f"{n} {v:.3f}" for n, v in out[machine]["mean_id_auroc"].items())
             + f"  ({seconds:.0f}s)")
    return out


def one_digit(base: DetectConfig, digits: Sequence[str], folder: Path, progress: bool = False,
              echo: Callable[[str], None] = print) -> dict[str, Any]:
    """FSDD one-class: per digit, every detector fitted on that digit's training clips, tested on all
    test clips (that digit normal, the other nine anomalous); :func:`compare.one_class`."""
    cfg = dataclasses.replace(base, data=dataclasses.replace(base.data, dataset="fsdd"))
    return compare.one_class(cfg, digits, folder, progress=progress, echo=echo)


def held_out_speaker(base: DetectConfig, speaker: str, speakers: Sequence[str], folder: Path,
                     progress: bool = False, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """FSDD with speakers as classes: every detector fitted on the other ``speakers``' training clips,
    tested on the test clips of all (``speaker``'s anomalous)."""
    normal = tuple(s for s in speakers if s != speaker)
    cfg = _with_sound(dataclasses.replace(base, data=dataclasses.replace(
        base.data, dataset="fsdd", normal_classes=normal, anomaly_classes=(speaker,))), label="speaker")
    t0 = time.perf_counter()
    folders = compare.fit_all(cfg, folder, progress=progress, echo=echo)
    ev = compare.evaluate(folders, progress=progress)
    test = ev["test"]
    result = {"speaker": speaker, "normal_speakers": list(normal),
              "metrics": {n: {**m, "auroc_interval": list(auroc_interval(test.labels, ev["scores"][n]))}
                          for n, m in ev["metrics"].items()},
              "test": {"normal": int((test.labels == 0).sum()), "anomalous": int((test.labels == 1).sum())},
              "seconds": time.perf_counter() - t0}
    echo(f"held-out speaker {speaker}: " + "  ".join(f"{n} {m['auroc']:.3f}" for n, m in result["metrics"].items()))
    return result


def probe_digits(recipe: Config, held_out: Sequence[str], folder: Path, progress: bool = False,
                 echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Sound classification on FSDD digits, speakers held out: VICReg trained on the other speakers'
    clips (``recipe``), then a linear probe trained on their representations and tested on the held-out
    speakers' clips; the same probe on a random-init encoder (its input standardisation fitted on
    the training clips) as the floor.

    Returns:
        ``{"vicreg": {top1, top5}, "random": {top1, top5}, "train_clips", "test_clips", "seconds": {...}}``.
    """
    cfg = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, dataset="fsdd"),
                              sound=dataclasses.replace(recipe.sound, split="speaker", test_speakers=tuple(held_out),
                                                        label="class"))
    t0 = time.perf_counter()
    run = folder / "vicreg"
    if not (run / "encoder.safetensors").exists():
        train(cfg, run, resume=(run / "config.json").exists(), progress=progress, echo=echo)
    t_train = time.perf_counter() - t0
    out: dict[str, Any] = {"held_out_speakers": list(held_out)}
    inputs = {split: load_inputs("fsdd", split, cfg.data.data_dir, cfg) for split in ("train", "test")}
    encoders = {"vicreg": load_source(run).module, "random": load_source(f"random:{cfg.model.backbone}",
                                                                          seed=cfg.train.seed).module}
    fit_standardizers(encoders["random"], inputs["train"].images)  # the floor sees standardised spectrograms too
    for name, module in encoders.items():
        t1 = time.perf_counter()
        tr, te = (encode(module, inputs[s].images, cfg.augment).numpy() for s in ("train", "test"))
        result = linear_probe(tr, inputs["train"].labels.numpy(), te, inputs["test"].labels.numpy())
        out[name] = {"top1": result.top1, "top5": result.top5, "seconds": time.perf_counter() - t1}
    out["train_clips"], out["test_clips"] = len(inputs["train"]), len(inputs["test"])
    out["train_seconds"] = t_train
    echo(f"FSDD digits, speakers {', '.join(held_out)} held out: linear probe top-1 VICReg "
         f"{out['vicreg']['top1']:.1%} vs random init {out['random']['top1']:.1%}")
    return out
