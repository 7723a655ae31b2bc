"""Every detector on one normal set (:func:`fit_all`, :func:`evaluate`), the one loop that repeats it per
case (:func:`fit_every_detector`: a class, a machine type, a held-out speaker) and the one-class protocol."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import Config, DetectConfig, get_preset
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.metrics import detection_metrics
from viclab.data import SOUND_DATASETS, dataset_modality
from viclab.detect.api import fit_detector, load_detector
from viclab.detect.data import TestSet, load_test

RANDOM_FLOOR = "random-encoder knn"


def fit_all(base: DetectConfig, folder: Path, ctx: Context = DEFAULT_CONTEXT,
            detectors: Sequence[str] | None = None) -> dict[str, Path]:
    """Fit every detector (or those named) of ``base``'s normal data into ``folder/<name>``; returns name -> folder.

    One VICReg is trained (by ``vicreg_terms``) and its encoder serves ``knn`` and ``mahalanobis``; the
    floor is ``knn`` on the recipe's ``random:<backbone>``. Images add ``shift`` (its network: :func:`shift_recipe`);
    sounds add ``dcase_ae``, and ``machine_id`` on a layout whose clips carry machine IDs (MIMII, DCASE).
    """
    data = base.data.normal or base.data.dataset
    sound = dataset_modality(data) == "spectrogram"
    layout = SOUND_DATASETS.get(data)
    wanted = detectors or ("vicreg_terms", "knn", "mahalanobis", "autoencoder",
                           *(("dcase_ae",) if sound else ("shift",)),
                           *(("machine_id",) if layout is not None and layout.machine_ids else ()), RANDOM_FLOOR)
    folders = {"vicreg_terms": folder / "vicreg_terms"}
    if {"vicreg_terms", "knn", "mahalanobis"} & set(wanted):  # the VICReg they share
        fit_detector(dataclasses.replace(base, detector="vicreg_terms", encoder=None), folders["vicreg_terms"], ctx)
    run = str(folders["vicreg_terms"] / "train")
    plan = {"knn": ("knn", run, base.recipe), "mahalanobis": ("mahalanobis", run, base.recipe),
            "autoencoder": ("autoencoder", None, base.recipe), "dcase_ae": ("dcase_ae", None, base.recipe),
            "machine_id": ("machine_id", None, base.recipe), "shift": ("shift", None, shift_recipe(base)),
            RANDOM_FLOOR: ("knn", f"random:{base.recipe.model.backbone}", base.recipe)}
    for name, (detector, encoder, recipe) in plan.items():
        if name in wanted:
            folders[name] = folder / name.replace(" ", "_")
            fit_detector(dataclasses.replace(base, detector=detector, encoder=encoder, recipe=recipe), folders[name],
                         ctx)
    return {k: v for k, v in folders.items() if k in wanted}


def shift_recipe(base: DetectConfig) -> Config:
    """The shift detector's network in a comparison: ``base``'s recipe when it already trains a shift objective,
    else the ``rotation`` recipe (its views, model and optimiser, the measured winner: docs/detection.md) on
    ``base``'s data and image size, with its epochs, batch, seed and runtime: one training budget for every network."""
    own = base.recipe
    if own.train.objective != "vicreg":
        return own
    rotation = get_preset("rotation")
    kept = {f: getattr(own.train, f) for f in ("epochs", "batch_size", "seed", "device", "precision", "min_steps",
                                               "eval_test")}
    return dataclasses.replace(rotation, data=own.data, augment=dataclasses.replace(rotation.augment,
                                                                                     size=own.augment.size),
                               train=dataclasses.replace(rotation.train, **kept))


def evaluate(folders: dict[str, Path], test: TestSet | None = None, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Each detector's metrics (:func:`detection_metrics`) on ``test`` (default: the first detector's
    test set); ``vicreg_terms`` once per quantity, as ``vicreg_terms:<quantity>``. Also the scores."""
    results, scores = {}, {}
    for name, folder in folders.items():
        det, summary = load_detector(folder)
        if test is None:
            test = load_test(det.cfg.data, sound=det.cfg.recipe.sound)
        t0 = time.perf_counter()
        s = det.score_data(test.data, ctx)
        seconds = time.perf_counter() - t0
        for k in det.quantities:
            label = name if k == "score" else f"{name}:{k}"
            results[label] = {**detection_metrics(test.labels, s[k]), "score_seconds": seconds,
                              "fit_seconds": summary["seconds"]["total"]}
            scores[label] = s[k]
    return {"metrics": results, "scores": scores, "test": test}


Case = tuple[str, DetectConfig, Path]  # (key, the detectors' config, their folder)


def fit_every_detector(cases: Iterable[Case], summarise: Callable[[str, dict[str, Any]], dict[str, Any]],
                       line: Callable[[str, dict[str, Any]], str], ctx: Context = DEFAULT_CONTEXT,
                       on_case: Callable[[str, dict[str, Any]], None] | None = None,
                       detectors: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per case, fit every detector (:func:`fit_all`), score them on its test set (:func:`evaluate`), keep a row.

    Args:
        cases: ``(key, config, folder)``: the one-class protocol's classes, the machine types, a held-out speaker.
        summarise: ``(key, evaluation) -> row``; the loop adds the row's ``"seconds"`` (fit and score).
        line: ``(key, row) -> the line echoed`` once the row is complete.
        on_case: sees each case's :func:`evaluate` output (scores and test set included) before it is dropped.
        detectors: only these (:func:`fit_all`'s names; default: every one).

    Returns:
        ``{key: row}`` in the order of ``cases``.
    """
    rows = {}
    for key, cfg, folder in cases:
        t0 = time.perf_counter()
        ev = evaluate(fit_all(cfg, folder, ctx=ctx, detectors=detectors), ctx=ctx)
        if on_case is not None:
            on_case(key, ev)
        rows[key] = {**summarise(key, ev), "seconds": time.perf_counter() - t0}
        ctx.echo(line(key, rows[key]))
    return rows


def by_group(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray,
             metric: Callable[[np.ndarray, np.ndarray], dict[str, Any]] = detection_metrics) -> dict[str, Any]:
    """``metric(labels, scores)`` of each group (e.g. machine ID) of ``(M,)`` ``groups``, in sorted order."""
    return {g: metric(labels[groups == g], scores[groups == g]) for g in sorted(set(groups))}


def label_counts(labels: np.ndarray) -> dict[str, int]:
    """How many normal (0) and anomalous (1) items a test set holds."""
    return {"normal": int((labels == 0).sum()), "anomalous": int((labels == 1).sum())}


def one_class(base: DetectConfig, classes: Sequence[str], folder: Path, ctx: Context = DEFAULT_CONTEXT,
              on_class: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """One-class protocol (spec §5): per class, every detector fitted on that class's training images only and
    tested on the whole test split (that class normal, the rest anomalous); ``on_class`` as ``on_case``.

    Returns:
        ``{"classes", "per_class": [{class, metrics, seconds}], "mean_auroc": {detector: mean}}``.
    """
    cases = ((str(c), dataclasses.replace(base, data=dataclasses.replace(base.data, normal_classes=(str(c),))),
              folder / f"class-{c}") for c in classes)
    rows = list(fit_every_detector(
        cases, lambda c, ev: {"class": c, "metrics": ev["metrics"]},
        lambda c, r: f"one-class {c}: " + "  ".join(f"{k} {v['auroc']:.3f}" for k, v in r["metrics"].items())
        + f"  ({r['seconds']:.0f}s)", ctx, on_class).values())
    mean = {n: sum(r["metrics"][n]["auroc"] for r in rows) / len(rows) for n in rows[0]["metrics"]}
    return {"classes": [str(c) for c in classes], "per_class": rows, "mean_auroc": mean}
