"""The study's part for spec §4: one-class anomaly detection with every detector, at a small budget.

Per class of ``StudyConfig.detect_classes``: every detector of :func:`viclab.detect.compare.fit_all`
fitted on that class's training images, tested on the whole test split. For the first class the
stage also draws the ROC and precision-recall curves of every detector, its most anomalous test
images, and the VICReg-term monitor over a stream of normal and anomalous batches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from viclab.config import MonitorConfig, StudyConfig
from viclab.core.context import Context
from viclab.detect import compare, run_monitor
from viclab.plot import figures

TOP = 8  # most anomalous images shown per detector


def _main_detectors(metrics: dict[str, Any], score: str) -> list[str]:
    """The rows drawn in the figures: each detector once (vicreg_terms by its configured score)."""
    return [k for k in metrics if ":" not in k or k == f"vicreg_terms:{score}"]


def detection_stage(cfg: StudyConfig, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    """The stage's ``run(folder)``: fits and scores into ``folder``, returns the numbers."""
    def run(folder: Path) -> dict[str, Any]:
        first: dict[str, Any] = {}

        def keep_first(c: str, ev: dict[str, Any]) -> None:
            if not first:
                first.update(ev, cls=c)

        base = cfg.detect
        result = compare.one_class(base, cfg.detect_classes, folder / "detectors", ctx=ctx, on_class=keep_first)
        test, labels = first["test"], first["test"].labels
        names = _main_detectors(first["metrics"], base.score)
        figures.roc_pr_png([(n, labels, first["scores"][n]) for n in names],
                           f"one-class {cfg.recipe.data.dataset}, class {first['cls']} normal: "
                           f"{int((labels == 0).sum())} normal vs {int((labels == 1).sum())} anomalous test images",
                           folder / "roc_pr.png")
        rows = [(n, first["scores"][n], lambda i: test.data.images[i],
                 lambda i, s: f"{test.origin[i].split(':')[-1]} {s:.3g}") for n in names]
        figures.top_anomalies_png(rows, TOP, f"class {first['cls']} normal: the {TOP} most anomalous test images per "
                                             "detector (true class, score)", folder / "top_anomalies.png",
                                  test.data.modality)
        # Batches of at most 64, and no more images than the smaller side holds (no image twice in a batch).
        batch = min(MonitorConfig.batch_size, int((labels == 0).sum()), int((labels == 1).sum()))
        monitor = run_monitor(folder / "detectors" / f"class-{first['cls']}" / "vicreg_terms", folder / "monitor",
                              batch_size=batch, ctx=ctx) if batch >= 2 else None
        return {**result, "first_class": first["cls"], "figure_detectors": names,
                "monitor": {k: monitor[k] for k in ("stream", "batch_size", "mean")} if monitor else None,
                "recipe": {"epochs": base.recipe.train.epochs, "views": base.views,
                           "autoencoder_epochs": base.autoencoder.epochs, "backbone": base.recipe.model.backbone}}

    return run

