"""``viclab anomaly`` (spec A1-A3): the ``knn`` detector of each encoder, fitted on its training
representations and scored on a normal and an anomalous test split, with its figures and summary."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.config import ANOMALIES, EVAL_DEFAULTS, DetectConfig, EvalConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_save_npy, atomic_write_text
from viclab.core.metrics import auroc_interval, roc
from viclab.detect.detectors import KnnDetector
from viclab.eval.tasks import SourceLike, Task
from viclab.plot import figures
from viclab.represent.layers import stage_source
from viclab.represent.neighbors import check_k


def _tasks(sources: Sequence[SourceLike], names: Sequence[str] | None, anomalies: str, **task: Any) -> list[Task]:
    """One task per source; refused when a source's own data would serve as the anomalies."""
    if not sources:
        raise ViclabError("anomaly needs at least one run folder or weights file")
    if names is not None and len(names) != len(sources):
        raise ViclabError(f"{len(names)} names for {len(sources)} sources; give one name per source")
    tasks = [Task(s, name=names[i] if names else None, **task) for i, s in enumerate(sources)]
    for t in tasks:
        if t.cfg.anomaly_layers == "all":
            t.encoder = stage_source(t.encoder)
        if t.dataset_name == anomalies:
            what = "was trained on" if t.dataset is None else "is evaluated on"
            raise ViclabError(f"{t.encoder.name} {what} {anomalies}, so it cannot serve as the anomalies; "
                              "choose another anomaly dataset or image folder")
    return tasks


def _csv(scores: np.ndarray, truth: np.ndarray, n0: int, normal: str, odd: str) -> str:
    return "index,dataset,label,score\n" + "".join(
        f"{i if i < n0 else i - n0},{normal if i < n0 else odd},{truth[i]},{s:.6g}\n" for i, s in enumerate(scores))


def _score(t: Task, label: str, anomalies: str, out_dir: Path) -> dict[str, Any]:
    """One encoder's ``knn`` detector on its normal then anomalous test split: curve, grid row, files, JSON entry."""
    cfg = t.cfg
    odd = t.reps("test", anomalies)  # first: a wrong --anomalies fails before any encoding
    train, normal = t.reps("train"), t.reps("test")
    check_k("anomaly_k (-k)", cfg.anomaly_k, len(train.labels), "training representations")
    det = KnnDetector(DetectConfig(k=cfg.anomaly_k), t.encoder.module, t.ctx.runtime)
    det.fit_features(torch.from_numpy(train.features))
    test_x = np.concatenate([normal.features, odd.features])
    n0 = len(normal.labels)
    truth = np.concatenate([np.zeros(n0, np.int64), np.ones(len(odd.labels), np.int64)])
    t0 = time.perf_counter()
    scores = det.score_features(test_x)["score"]
    seconds = time.perf_counter() - t0
    fpr, tpr, auc = roc(truth, scores)
    interval = auroc_interval(truth, scores)  # 95% stratified bootstrap: small folders move the AUROC a lot
    stem = "scores-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
    top = figures.most_anomalous(scores, cfg.anomaly_top)
    t.ctx.echo(f"{label}: AUROC {auc:.4f} [95% {interval[0]:.3f}, {interval[1]:.3f}] ({normal.dataset} test {n0} "
               f"normal vs {odd.dataset} test {len(odd.labels)} anomalous, k={cfg.anomaly_k}, scoring {seconds:.2f}s)")
    return {"curve": (label, fpr, tpr, auc), "stem": stem, "scores": scores, "modality": normal.data.modality,
            "csv": _csv(scores, truth, n0, normal.dataset, odd.dataset),
            "row": (label, scores, lambda i: normal.data.images[i] if i < n0 else odd.data.images[i - n0],
                    lambda i, s: f"{odd.dataset if truth[i] else normal.dataset} {s:.2f}"),
            "result": {"name": label, "source": t.encoder.name, "weights_sha256": t.encoder.weights_sha256,
                       "auroc": auc, "auroc_interval": list(interval), "n_normal": n0,
                       "n_anomalies": len(odd.labels), "seconds": seconds,
                       "top": [{"dataset": normal.dataset if i < n0 else odd.dataset,
                                "index": int(i if i < n0 else i - n0), "score": float(scores[i])} for i in top],
                       "scores": str(out_dir / f"{stem}.npy")}}


def run_anomaly(sources: Sequence[SourceLike], out: str | Path | None = None, data_dir: str | None = None,
                anomalies: str = ANOMALIES, names: Sequence[str] | None = None, cfg: EvalConfig = EVAL_DEFAULTS,
                ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True, dataset: str | None = None) -> dict[str, Any]:
    """kNN-density anomaly detection (spec A1-A3) for one or several encoders: each encoder's ``knn``
    detector (:class:`~viclab.detect.detectors.KnnDetector`).

    Normal reference: the training split the encoder was trained on. Test set: that dataset's test split (label 0)
    plus ``anomalies``' test split (label 1; a registered dataset or an image-folder path). Score: mean L2 distance
    to the ``cfg.anomaly_k`` nearest references.

    Writes ``roc.png`` (all encoders), ``top_anomalies.png`` (the ``cfg.anomaly_top`` highest-scoring test images,
    one row per encoder), per encoder ``scores-<name>.npy`` and ``.csv``, and ``anomaly.json``.
    """
    tasks = _tasks(sources, names, anomalies, out=out, cfg=cfg, ctx=ctx.reading(data_dir), use_cache=use_cache,
                   dataset=dataset)
    out_dir = tasks[0].out
    # Everything is computed before anything is written: a failure leaves no half-filled folder.
    names = [t.encoder.name for t in tasks]  # the k-th occurrence of a name (k >= 2) suffixed " (k)"
    labels = [n if n not in names[:i] else f"{n} ({names[:i].count(n) + 1})" for i, n in enumerate(names)]
    runs = [_score(t, label, anomalies, out_dir) for t, label in zip(tasks, labels)]
    for r in runs:
        atomic_save_npy(out_dir / f"{r['stem']}.npy", r["scores"])
        atomic_write_text(out_dir / f"{r['stem']}.csv", r["csv"])
    normal_name = tasks[0].dataset_name
    where = ", every stage" if cfg.anomaly_layers == "all" else ""
    figures.roc_png([r["curve"] for r in runs], f"kNN anomaly detection, k={cfg.anomaly_k}{where}\n{normal_name} test "
                                                 f"(normal) vs {anomalies} test (anomalous)", out_dir / "roc.png")
    figures.top_anomalies_png([r["row"] for r in runs], cfg.anomaly_top, f"the {cfg.anomaly_top} most anomalous test "
                              "images (dataset, score)", out_dir / "top_anomalies.png", runs[0]["modality"])
    for t in tasks:
        t.to_tensorboard([out_dir / "roc.png", out_dir / "top_anomalies.png"])
    payload = {"dataset": normal_name, "anomalies": anomalies, "eval_config": asdict(cfg),
               "runs": [r["result"] for r in runs]}
    atomic_write_text(out_dir / "anomaly.json", json.dumps(payload, indent=2) + "\n")
    ctx.echo(f"-> {out_dir / 'roc.png'}, {out_dir / 'top_anomalies.png'}")
    return payload
