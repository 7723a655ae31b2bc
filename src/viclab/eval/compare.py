"""One table comparing several runs on the headline numbers of spec §3."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import ANOMALIES, EVAL_DEFAULTS, EvalConfig
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write_text, check_writable_dir
from viclab.core.metrics import roc
from viclab.core.runtime import require_one_process
from viclab.eval.cluster import kmeans, silhouette
from viclab.eval.probe import knn_accuracy, linear_probe
from viclab.represent.encode import PRETRAINED_DATASET, eval_runtime, load_source, representations
from viclab.represent.neighbors import check_k, knn_anomaly_scores

COLUMNS = ("linear top-1", "kNN top-1", "AUROC vs {anomalies}", "silhouette")


def compare_one(source: str | Path, name: str | None = None, data_dir: str | None = None, anomalies: str = ANOMALIES,
                cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = QUIET, use_cache: bool = True,
                dataset: str | None = None) -> dict[str, Any]:
    """Linear-probe and kNN top-1, kNN-anomaly AUROC and K-means silhouette of one source, on
    ``dataset`` (default: the one it was trained on).

    The AUROC is ``None`` (with the reason) for a method that cannot represent the
    anomaly images (latent codes exist only for the training images).
    """
    enc = load_source(source, name=name, seed=cfg.seed)
    if not dataset and enc.config.data.dataset == PRETRAINED_DATASET:
        raise ViclabError(f"{enc.name} is a published checkpoint trained on ImageNet, which viclab does not load; "
                          "compare it on a dataset or image folder with --dataset NAME_OR_FOLDER")
    if (dataset or enc.config.data.dataset) == anomalies:
        raise ViclabError(f"{enc.name} is evaluated on {anomalies}, so it cannot serve as the anomalies too; choose "
                          "another --anomalies dataset or image folder")

    ctx = replace(ctx, runtime=eval_runtime(cfg))

    def reps(split: str, other: str | None = None):
        return representations(enc, split, other or dataset, data_dir, use_cache=use_cache, ctx=ctx)

    t0 = time.perf_counter()
    train, test = reps("train"), reps("test")
    for name, k in (("knn_k", cfg.knn_k), ("anomaly_k", cfg.anomaly_k)):
        check_k(name, k, len(train.labels), f"training representations of {enc.name}")
    if cfg.clusters >= len(train.labels):
        raise ViclabError(f"clusters = {cfg.clusters} needs more training images than {enc.name} has "
                          f"({len(train.labels)}); use at most {len(train.labels) - 1}")
    probe = linear_probe(train.features, train.labels, test.features, test.labels, cfg.probe_weight_decays,
                         seed=cfg.seed)
    knn = knn_accuracy(train.features, train.labels, test.features, test.labels, cfg.knn_k, cfg.knn_temperature)
    auroc, why = None, None
    try:
        odd = reps("test", anomalies)
        truth = np.r_[np.zeros(len(test.labels)), np.ones(len(odd.labels))]
        scores = knn_anomaly_scores(train.features, np.concatenate([test.features, odd.features]), cfg.anomaly_k)
        auroc = roc(truth, scores)[2]
    except ViclabError as e:
        why = str(e)
    assign, _ = kmeans(train.features, cfg.clusters, cfg.seed)
    return {"name": enc.name, "source": str(source), "weights_sha256": enc.weights_sha256,
            "kind": enc.kind, "dim": enc.dim, "dataset": dataset or enc.config.data.dataset,
            "n_train": len(train.labels), "n_test": len(test.labels),
            "test_split": f"{enc.test_split} images" if enc.test_split != "test" else "test",
            "linear_top1": probe.top1, "linear_top5": probe.top5, "knn_top1": knn[1],
            "auroc": auroc, "auroc_unavailable": why, "silhouette": silhouette(train.features, assign),
            "seconds": time.perf_counter() - t0}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def markdown_table(rows: Sequence[dict[str, Any]], anomalies: str) -> str:
    """The comparison as a Markdown table (accuracies in %, n/a where undefined)."""
    head = ["run", "probe data (train / test)", *(c.format(anomalies=anomalies) for c in COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        data = f"{r['n_train']} / {r['n_test']}" + (" held-out codes" if r["test_split"] != "test" else "")
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(f"| {r['name']} | {data} | {_pct(r['linear_top1'])} | {_pct(r['knn_top1'])} | {auroc} | "
                     f"{r['silhouette']:.3f} |")
    return "\n".join(lines) + "\n"


def run_compare(sources: Sequence[str | Path], names: Sequence[str] | None = None, out: str | Path | None = None,
                data_dir: str | None = None, anomalies: str = ANOMALIES, cfg: EvalConfig = EVAL_DEFAULTS,
                ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True, dataset: str | None = None) -> dict[str, Any]:
    """Compare runs (spec S3/S4/S5/S6/S7 side by side); writes ``compare.json`` and ``compare.md``.

    Args:
        sources: run folders, ``.safetensors`` files or ``random:BACKBONE``.
        names: one label per source (default: folder or file names).
        out: output folder (default ``./compare``).
        anomalies: dataset whose test split serves as anomalies for the AUROC column.
        dataset: probe, cluster and take the normal images from this dataset (a registered name or an
            image folder) instead of each source's training dataset.
    """
    require_one_process("viclab compare")
    if not sources:
        raise ViclabError("compare needs at least one run folder or weights file")
    if names is not None and len(names) != len(sources):
        raise ViclabError(f"{len(names)} names for {len(sources)} sources; give one name per source")
    out_dir = check_writable_dir(Path(out or "compare"))
    rows = []
    for i, s in enumerate(sources):
        rows.append(compare_one(s, names[i] if names else None, data_dir, anomalies, cfg, ctx, use_cache, dataset))
        ctx.echo(f"{rows[-1]['name']}: done in {rows[-1]['seconds']:.1f}s")
    table = markdown_table(rows, anomalies)
    payload = {"anomalies": anomalies, "eval_config": asdict(cfg), "runs": rows}
    atomic_write_text(out_dir / "compare.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out_dir / "compare.md", table)
    ctx.echo(table + f"-> {out_dir / 'compare.md'}, {out_dir / 'compare.json'}")
    return payload
