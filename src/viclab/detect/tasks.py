"""What ``viclab detect score`` and ``viclab detect monitor`` compute and write."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.config import MonitorConfig
from viclab.config.detect import TERMS
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write_text, check_writable_dir
from viclab.core.metrics import auroc_interval, detection_metrics, rates_at
from viclab.detect.api import calibrated_threshold, check_data, load_detector, noun
from viclab.detect.compare import by_group
from viclab.detect.data import ANOMALOUS, NORMAL, TestSet, load_test
from viclab.detect.detectors import Detector, channels_last
from viclab.losses import VICRegLoss
from viclab.plot import figures
from viclab.views import view_maker


def _test_sets(folders: Sequence[str | Path], detectors: Sequence[Detector], abnormal: str | None,
               anomalies: str | None, ctx: Context) -> list[TestSet]:
    """Each detector's test set: the first detector's files (from ``ctx.data_dir`` if given), decoded (once per
    distinct setting) with that detector's own ``sound`` settings: a detector scores only the features it was fitted
    on (32 mel bands are not 64). Detectors are compared only if they were fitted on the same normal data."""
    data_cfg = detectors[0].cfg.data
    for f, d in zip(folders[1:], detectors[1:]):
        if dataclasses.replace(d.cfg.data, data_dir=None) != dataclasses.replace(data_cfg, data_dir=None):
            raise ViclabError(f"{Path(f)} was fitted on other normal data than {Path(folders[0])}; score them "
                              "separately")
    data_cfg = dataclasses.replace(data_cfg, data_dir=ctx.data_dir) if ctx.data_dir else data_cfg
    loaded: dict[str, TestSet] = {}
    out = []
    for f, det in zip(folders, detectors):
        sound = det.cfg.recipe.sound
        check_data(f, data_cfg, sound)
        key = json.dumps(dataclasses.asdict(sound), sort_keys=True)
        if key not in loaded:
            loaded[key] = load_test(data_cfg, abnormal, anomalies, sound)
        out.append(loaded[key])
    for f, test in zip(folders[1:], out[1:]):
        if list(test.files) != list(out[0].files) or not np.array_equal(test.labels, out[0].labels):
            raise ViclabError(f"{f} decodes the test data into other items than {folders[0]} (different clip "
                              "length or windows); score them separately")
    return out


def _csv(test: TestSet, names: list[str], scores: list[dict[str, np.ndarray]], flags: list[np.ndarray | None]) -> str:
    """One row per test item, with the file it came from; quoted where a path or name holds a comma."""
    groups = test.groups
    cols = ["index", "file", "origin", "label"] + (["group"] if groups is not None else [])
    for name, s in zip(names, scores):
        cols += [f"{name}:{k}" for k in s] + [f"{name}:flagged"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for i in range(len(test.labels)):
        row = [str(i), test.files[i], test.origin[i], str(test.labels[i])] + ([groups[i]] if groups is not None else [])
        for s, f in zip(scores, flags):
            row += [f"{v[i]:.7g}" for v in s.values()] + ["" if f is None else str(int(f[i]))]
        w.writerow(row)
    return buf.getvalue()


def _with_interval(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """:func:`detection_metrics` and the AUROC's 95% bootstrap interval (test sets are often small)."""
    return {**detection_metrics(labels, scores), "auroc_interval": list(auroc_interval(labels, scores))}


def _per_group(test: TestSet, s: np.ndarray) -> dict[str, Any] | None:
    """The metrics of each group (machine ID) that holds both normal and anomalous items, and their
    mean AUROC and pAUC (the DCASE convention: a detector is judged per machine, then averaged)."""
    if test.groups is None:
        return None
    metrics = by_group(test.groups, test.labels, s,
                       lambda labels, scores: _with_interval(labels, scores) if labels.min() != labels.max() else None)
    groups = {g: m for g, m in metrics.items() if m is not None}
    if not groups:
        return None
    return {"groups": groups, "mean_auroc": float(np.mean([m["auroc"] for m in groups.values()])),
            "mean_pauc": float(np.mean([m["pauc"] for m in groups.values()]))}


def _caption(test: TestSet, i: int, score: float) -> str:
    """A short caption: the file's name (not its path, which would overprint its neighbours) and the score."""
    name = Path(test.files[i]).name
    if len(name) > 36:  # two caption lines at most; the middle of a long name goes first
        name = name[:17] + "…" + name[-18:]
    return "\n".join([name[:18], name[18:]] if len(name) > 18 else [name]) + f"\n{score:.3g}"


def _score_one(name: str, det: Detector, summary: dict[str, Any], test: TestSet,
               ctx: Context) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray | None]:
    """One detector's scores on its test set: ``(metrics.json entry, scores, flags)``."""
    t0 = time.perf_counter()
    scores = det.score_data(test.data, ctx)
    seconds = time.perf_counter() - t0
    s, labels = scores["score"], test.labels
    m = _with_interval(labels, s)
    threshold = summary.get("threshold")
    at = rates_at(labels, s, threshold) if threshold is not None else None
    per_group = _per_group(test, s)
    result = {"detector": det.cfg.detector, "score": det.cfg.score if det.cfg.detector == "vicreg_terms"
              else det.cfg.detector, **m, "threshold": threshold,
              "threshold_fpr": summary.get("threshold_fpr"), "at_threshold": at, "seconds": seconds,
              "per_quantity": {k: detection_metrics(labels, v) for k, v in scores.items() if k != "score"},
              "per_group": per_group}
    at_line = f"  | at threshold {threshold:.4g}: TPR {at['tpr']:.3f} FPR {at['fpr']:.3f}" if at else ""
    ctx.echo(f"{name} ({det.cfg.detector}): AUROC {m['auroc']:.4f} [95% {m['auroc_interval'][0]:.3f}, "
             f"{m['auroc_interval'][1]:.3f}]  AUPR {m['aupr']:.4f}  pAUC {m['pauc']:.4f}{at_line}  ({seconds:.1f}s)")
    if per_group:
        ctx.echo("  per group: " + "; ".join(f"{g} AUROC {v['auroc']:.3f} [{v['auroc_interval'][0]:.2f}, "
                                             f"{v['auroc_interval'][1]:.2f}] pAUC {v['pauc']:.3f}"
                                             for g, v in per_group["groups"].items())
                 + f"; mean AUROC {per_group['mean_auroc']:.3f}")
    return result, scores, (s > threshold if threshold is not None else None)


def run_score(folders: Sequence[str | Path], out: str | Path, abnormal: str | None = None,
              anomalies: str | None = None, top: int = 16, fpr: float | None = None,
              ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Score the test set of one or several fitted detectors and write the evaluation.

    The test set is the first detector's (its normal test items and anomalies), with ``abnormal`` (a folder) or
    ``anomalies`` (a dataset) replacing its own; each detector decodes it with its own sound settings. Writes into
    ``out``: ``scores.csv`` (every item: its file, origin, label, group (machine ID) when the items carry one, each
    detector's quantities and its flag at its threshold), ``metrics.json`` (AUROC with its 95% bootstrap interval,
    AUPR, pAUC at FPR <= 0.1, the same per group, and the rates at the threshold calibrated on held-out normal
    items), ``roc_pr.png``, ``hist-<name>.png`` and ``top_anomalies.png`` (the ``top`` highest-scoring test items per
    detector). ``fpr``: calibrate each threshold at this false-positive rate on its held-out normal items instead of
    the one chosen at fit time (``detect.fpr``). ``ctx.data_dir``: the data root, instead of the first detector's.
    """
    if not folders:
        raise ViclabError("detect score needs at least one detector folder")
    out = check_writable_dir(Path(out), "output folder")
    loaded = [load_detector(f) for f in folders]
    if fpr is not None:
        loaded = [(d, {**summary, "threshold": calibrated_threshold(f, fpr), "threshold_fpr": fpr})
                  for f, (d, summary) in zip(folders, loaded)]
    detectors = [d for d, _ in loaded]
    tests = _test_sets(folders, detectors, abnormal, anomalies, ctx)
    test, labels = tests[0], tests[0].labels
    unit = noun(test.data)
    names = [Path(f).name or str(f) for f in folders]
    names = [n if names.count(n) == 1 else f"{n}-{i}" for i, n in enumerate(names)]
    results, all_scores, flags, rows = {}, [], [], []
    for name, det, (_, summary), t in zip(names, detectors, loaded, tests):
        results[name], scores, flag = _score_one(name, det, summary, t, ctx)
        all_scores.append(scores)
        flags.append(flag)
        rows.append((name, scores["score"], lambda i, t=t: t.data.images[i], lambda i, v, t=t: _caption(t, i, v)))
    n0, n1 = int((labels == NORMAL).sum()), int((labels == ANOMALOUS).sum())
    title = f"{n0} normal vs {n1} anomalous test {unit}"
    figures.roc_pr_png([(n, labels, s["score"]) for n, s in zip(names, all_scores)], title, out / "roc_pr.png")
    for name, s, (_, summary) in zip(names, all_scores, loaded):
        figures.score_hist_png(s["score"][labels == NORMAL], s["score"][labels == ANOMALOUS], summary.get("threshold"),
                               f"{name}: {title}", out / f"hist-{name}.png")
    figures.top_anomalies_png(rows, top, f"the {min(top, len(labels))} most anomalous test {unit} per detector "
                              "(file, score)", out / "top_anomalies.png", test.data.modality)
    atomic_write_text(out / "scores.csv", _csv(test, names, all_scores, flags))
    payload = {"test": {"normal": n0, "anomalous": n1, "abnormal": abnormal or detectors[0].cfg.data.abnormal,
                        "anomalies": anomalies or detectors[0].cfg.data.anomalies}, "detectors": results}
    atomic_write_text(out / "metrics.json", json.dumps(payload, indent=2) + "\n")
    ctx.echo(f"-> {out / 'scores.csv'}, {out / 'metrics.json'}, {out / 'roc_pr.png'}, {out / 'top_anomalies.png'}")
    return payload


def parse_stream(spec: str) -> list[bool]:
    """``"normal:20,anomalous:5,normal:10"`` -> one flag per batch (True: anomalous)."""
    flags: list[bool] = []
    for part in spec.split(","):
        kind, _, count = part.strip().partition(":")
        if kind not in ("normal", "anomalous") or not count.strip().isdigit() or int(count) < 1:
            raise ViclabError(f"cannot read stream part {part!r}; write kind:batches with kind normal or anomalous, "
                              "e.g. normal:20,anomalous:5,normal:10")
        flags += [kind == "anomalous"] * int(count)
    return flags


@torch.no_grad()
def batch_terms(det: Detector, batches: Sequence[torch.Tensor], seed: int = 0,
                ctx: Context = QUIET) -> dict[str, np.ndarray]:
    """spec §1's three terms of each batch of new images under the frozen VICReg model.

    Args:
        det: a ``vicreg_terms`` detector.
        batches: ``(B, 3, S, S)`` uint8 images (or ``(B, 1, n_mels, T)`` spectrograms) each; two views per image.

    Returns:
        ``{"invariance", "variance", "covariance"}`` -> ``(T,)`` per batch.
    """
    loss = VICRegLoss(**{**dataclasses.asdict(det.loss), "gather_distributed": False})
    gen = torch.Generator(device=det.rt.device).manual_seed(seed)
    out = {k: [] for k in TERMS}
    from tqdm import tqdm

    for x in tqdm(batches, desc="monitor", disable=not ctx.progress, leave=False, dynamic_ncols=True):
        v1, v2 = view_maker(det.modality, det.recipe).pair(x.to(det.rt.device), gen)
        with det.rt.autocast():
            z1, z2 = det.network(channels_last(v1)), det.network(channels_last(v2))
        terms = loss(z1, z2)
        for k in TERMS:
            out[k].append(float(getattr(terms, k)))
    return {k: np.array(v) for k, v in out.items()}


def _stream(test: TestSet, flags: list[bool], batch_size: int, seed: int) -> list[torch.Tensor]:
    """One batch of ``batch_size`` test items per flag, all anomalous (True) or all normal, drawn without
    replacement (seeded), cycling when a kind runs out."""
    rng = np.random.default_rng(seed)
    pools = {kind: np.flatnonzero(test.labels == label) for kind, label in ((False, NORMAL), (True, ANOMALOUS))}
    for kind, pool in pools.items():
        if kind in flags and len(pool) < batch_size:
            raise ViclabError(f"the test set holds {len(pool)} {'anomalous' if kind else 'normal'} {noun(test.data)}, "
                              f"fewer than one batch of {batch_size}; use --batch-size {len(pool)} or fewer")
    queues = {kind: rng.permutation(p) for kind, p in pools.items()}
    batches = []
    for anomalous in flags:
        q = queues[anomalous]
        if len(q) < batch_size:  # refill with the images not left over, so no batch holds one image twice
            q = np.concatenate([q, rng.permutation(np.setdiff1d(pools[anomalous], q))])
        batches.append(test.data.images[torch.from_numpy(q[:batch_size])])
        queues[anomalous] = q[batch_size:]
    return batches


def _write_monitor(out: Path, terms: dict[str, np.ndarray], mask: np.ndarray, title: str) -> None:
    """``monitor.png``, the TensorBoard events (``tb/``) and ``monitor.csv`` of the terms per batch."""
    from torch.utils.tensorboard import SummaryWriter

    figures.monitor_png(terms, mask, title, out / "monitor.png")
    shutil.rmtree(out / "tb", ignore_errors=True)  # a rerun's events would overlay the earlier ones
    with SummaryWriter(str(out / "tb")) as tb:
        for t in range(len(mask)):
            for k, v in terms.items():
                tb.add_scalar(f"monitor/{k}", v[t], t)
            tb.add_scalar("monitor/anomalous", float(mask[t]), t)
    atomic_write_text(out / "monitor.csv", "batch,anomalous," + ",".join(TERMS) + "\n" + "".join(
        f"{t},{int(mask[t])}," + ",".join(f"{terms[k][t]:.7g}" for k in TERMS) + "\n" for t in range(len(mask))))


def run_monitor(folder: str | Path, out: str | Path, stream: str = MonitorConfig.stream,
                batch_size: int = MonitorConfig.batch_size, abnormal: str | None = None, anomalies: str | None = None,
                seed: int = MonitorConfig.seed, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Feed a stream of batches to a ``vicreg_terms`` detector and record the three terms per batch.

    Each batch holds ``batch_size`` test images, all normal or all anomalous as ``stream`` says,
    drawn without replacement (seeded) from the detector's test set (cycling when a kind runs
    out). Writes ``monitor.csv``, ``monitor.json`` (the terms, and each term's mean on normal and
    on anomalous batches), ``monitor.png`` with the anomalous stretches shaded, and the terms to
    TensorBoard (``tb/``). ``ctx.data_dir``: the data root, instead of the detector's.
    """
    flags = parse_stream(stream)
    if batch_size < 2:
        raise ViclabError(f"--batch-size {batch_size} must be >= 2 (the variance term needs 2 items)")
    if seed < 0:
        raise ViclabError(f"--seed {seed} must be >= 0")
    det, _ = load_detector(folder)
    if det.cfg.detector != "vicreg_terms":
        raise ViclabError(f"{folder} is a {det.cfg.detector} detector; the monitor plots VICReg's terms, so give a "
                          "vicreg_terms detector folder")
    out = check_writable_dir(Path(out), "output folder")
    test = _test_sets([folder], [det], abnormal, anomalies, ctx)[0]
    terms = batch_terms(det, _stream(test, flags, batch_size, seed), seed, ctx)
    mask = np.array(flags)

    def mean(v: np.ndarray) -> float | None:
        return float(v.mean()) if len(v) else None  # a stream of one kind has no mean for the other

    summary = {k: {"normal": mean(v[~mask]), "anomalous": mean(v[mask])} for k, v in terms.items()}
    _write_monitor(out, terms, mask, f"VICReg terms per batch of {batch_size} {noun(test.data)} ({Path(folder).name})")
    payload = {"stream": stream, "batch_size": batch_size, "terms": {k: v.tolist() for k, v in terms.items()},
               "anomalous": mask.tolist(), "mean": summary}
    atomic_write_text(out / "monitor.json", json.dumps(payload, indent=2) + "\n")
    ctx.echo("mean per batch, normal vs anomalous: " + "; ".join(
        f"{k} {s['normal']} vs {s['anomalous']}" for k, s in summary.items()) + f" -> {out / 'monitor.png'}")
    return payload
