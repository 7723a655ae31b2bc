"""Latent optimisation (spec S5): VICReg on a free code per training image, no encoder.

``naive`` pairs every code with itself, the analogue of two generated views of one
image: both views share the code, so invariance is identically 0 and nothing links
a code to its pixels. ``graph`` (the correction) pairs each code with the code of one
of its ``graph_k`` nearest images in a fixed data space, which turns the objective
into a Laplacian-Eigenmaps-like one. The codes are evaluated by a linear probe
trained on ``probe_fraction`` of them and tested on the rest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.ablate.graph import knn_table
from viclab.ablate.neighbours import sample_neighbours
from viclab.ablate.runs import begin_run, finish_run
from viclab.config import LatentConfig
from viclab.data import ImageData, load_images
from viclab.data.types import data_fingerprint
from viclab.errors import ViclabError
from viclab.eval.table import TABLE, TableSplit, save_table
from viclab.io import atomic_save_npy, atomic_write_text, check_writable_dir
from viclab.losses import VICRegLoss
from viclab.models.latent import build_latent
from viclab.train import rundir
from viclab.train.checkpoint import FOREIGN_CHECKPOINT, load_checkpoint, load_state, save_checkpoint

SUMMARY, GRAPH, GRAPH_INFO = "latent.json", "graph.npy", "graph.json"
TERMS = ("loss", "invariance", "variance", "covariance")
CHECKPOINT_SECONDS = 30.0  # an epoch takes seconds: checkpoint at most this often (and at the end)


def graph_neighbours(cfg: LatentConfig, data: ImageData, run_dir: Path, progress: bool,
                     started: bool = False) -> np.ndarray:
    """``(n, graph_k)`` fixed data-space neighbours, saved in the run folder and reused on resume.

    The saved graph is keyed (``graph.json``) by the SHA-256 of the feature encoder's weights,
    the images' fingerprint and ``graph_k``: a graph made from anything else is rebuilt, or,
    if the run has already trained on it (``started``), the run is refused.
    """
    from viclab.eval.features import load_source, representations

    path, info_path = run_dir / GRAPH, run_dir / GRAPH_INFO
    source = load_source(cfg.graph_features, seed=cfg.seed)
    key = {"weights_sha256": source.weights_sha256, "images": data_fingerprint(data), "k": cfg.graph_k}
    try:
        saved = json.loads(info_path.read_text()) if path.exists() and info_path.exists() else None
    except (OSError, json.JSONDecodeError):
        saved = None
    if saved == key:
        return np.load(path)
    if started:
        raise ViclabError(f"the neighbour graph of {run_dir} came from other features or images than "
                          f"{cfg.graph_features} gives now, and the run has already trained on it; start a new run")
    feats = representations(source, "train", cfg.dataset, cfg.data_dir, progress=progress).features[:len(data)]
    table = knn_table(feats, cfg.graph_k)
    atomic_save_npy(path, table)
    atomic_write_text(info_path, json.dumps(key, indent=2) + "\n")
    return table


def partners(idx: torch.Tensor, neighbours: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """The second "view" of each anchor: itself (naive) or a random graph neighbour."""
    return idx if neighbours is None else sample_neighbours(neighbours, idx, gen)


def probe_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint ``(train, test)`` index sets covering ``range(n)``, sorted."""
    perm = np.random.default_rng(seed).permutation(n)
    cut = int(round(fraction * n))
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def run_latent(cfg: LatentConfig, run_dir: str | Path, progress: bool = True,
               echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Optimise one code per training image with the VICReg objective; write a run folder.

    Writes ``config.json``, ``meta.json``, ``metrics.jsonl`` (every batch's terms),
    ``checkpoint.pt`` (resumable), ``graph.npy`` (``graph`` pairs),
    ``representations.safetensors`` (the codes: ``train`` = the probe's share,
    ``test`` = the rest, both of the training images) and ``latent.json``.
    """
    from tqdm import tqdm

    run_dir = check_writable_dir(Path(run_dir), "run folder")
    # The data is checked before the run folder is made: a wrong dataset leaves nothing behind.
    data = load_images(cfg.dataset, "train", cfg.data_dir).subset(cfg.subset)
    n = len(data)
    if cfg.batch_size > n:
        raise ViclabError(f"batch_size={cfg.batch_size} is larger than the {n} training images; use {n} or fewer")
    done = begin_run(run_dir, cfg, TABLE, SUMMARY, resumable=True)
    if done is not None:
        echo(f"{run_dir}: already trained")
        return done
    ckpt_path = run_dir / rundir.CHECKPOINT
    neighbours = None
    if cfg.pairs == "graph":
        neighbours = torch.from_numpy(graph_neighbours(cfg, data, run_dir, progress, ckpt_path.exists()))
    torch.manual_seed(cfg.seed)
    model, _ = build_latent(n, cfg.dim, cfg.projector)
    opts = [torch.optim.SparseAdam(model.codes.parameters(), lr=cfg.lr),
            torch.optim.Adam(model.projector.parameters(), lr=cfg.projector_lr)]
    loss_fn = VICRegLoss(**dataclasses.asdict(cfg.loss))
    gen = torch.Generator().manual_seed(cfg.seed)
    steps = n // cfg.batch_size
    epoch, step, before = 0, 0, 0.0
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, keys=("config", "epoch", "step", "model", "optimizers", "generator",
                                                "seconds"))
        load_state(model, ckpt["model"], ckpt_path, FOREIGN_CHECKPOINT)
        for o, state in zip(opts, ckpt["optimizers"]):
            load_state(o, state, ckpt_path, FOREIGN_CHECKPOINT)
        gen.set_state(ckpt["generator"])
        epoch, step, before = ckpt["epoch"], ckpt["step"], ckpt["seconds"]
    rundir.truncate_metrics(run_dir / rundir.METRICS, lambda r: r["step"] <= step)
    log = rundir.MetricsLog(run_dir / rundir.METRICS)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {"config": dataclasses.asdict(cfg), "epoch": epoch, "step": step,
                                    "model": model.state_dict(),
                                    "optimizers": [o.state_dict() for o in opts],
                                    "generator": gen.get_state(),
                                    "seconds": before + time.perf_counter() - t_start})

    t_start, last_save = time.perf_counter(), time.perf_counter()
    means: dict[str, float] = {}
    bar = tqdm(total=cfg.epochs * steps, initial=epoch * steps, desc=f"latent ({cfg.pairs})", disable=not progress,
               leave=False, dynamic_ncols=True)
    try:
        while epoch < cfg.epochs:
            perm = torch.randperm(n, generator=gen)
            values = torch.zeros(steps, len(TERMS))
            for b in range(steps):
                idx = perm[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                terms = loss_fn(model(idx), model(partners(idx, neighbours, gen)))
                for o in opts:
                    o.zero_grad(set_to_none=True)
                terms.loss.backward()
                for o in opts:
                    o.step()
                values[b] = torch.stack([t.detach() for t in terms])
                bar.update()
            epoch += 1
            log.write([{"split": "train", "epoch": epoch, "step": step + b + 1, **dict(zip(TERMS, v))}
                       for b, v in enumerate(values.tolist())])
            step += steps
            means = dict(zip(TERMS, values.mean(0).tolist()))
            if not all(np.isfinite(list(means.values()))):
                raise ViclabError(f"the loss became non-finite in epoch {epoch} of {run_dir}; use a lower --lr")
            bar.set_postfix(inv=f"{means['invariance']:.3g}", var=f"{means['variance']:.3g}",
                            cov=f"{means['covariance']:.3g}")
            if epoch == cfg.epochs or time.perf_counter() - last_save > CHECKPOINT_SECONDS:
                checkpoint()
                last_save = time.perf_counter()
    finally:
        bar.close()
        log.close()
    seconds = before + time.perf_counter() - t_start
    if not means:  # resumed after the last epoch's checkpoint: its terms are in the log
        last = [r for r in rundir.read_metrics(run_dir / rundir.METRICS) if r["epoch"] == epoch]
        means = {k: float(np.mean([r[k] for r in last])) for k in TERMS}
    codes = model.codes.weight.detach().numpy()
    fit, held = probe_split(n, cfg.probe_fraction, cfg.seed)
    save_table(run_dir / TABLE, "latent", cfg.dataset,
               {"train": TableSplit(codes[fit], fit, "train"), "test": TableSplit(codes[held], held, "train")},
               dataclasses.asdict(cfg))
    summary: dict[str, Any] = {"pairs": cfg.pairs, "codes": n, "dim": cfg.dim, "epochs": cfg.epochs,
                               "steps": step, "last_epoch": means, "seconds": seconds,
                               "probe_train": len(fit), "probe_test": len(held)}
    if neighbours is not None:
        labels = data.labels.numpy()
        summary["graph_same_class"] = float((labels[neighbours.numpy()] == labels[:, None]).mean())
    finish_run(run_dir, SUMMARY, summary)
    echo(f"latent optimisation ({cfg.pairs} pairs): {n} codes of {cfg.dim}, {cfg.epochs} epochs in {seconds:.1f}s; "
         f"last epoch inv {means['invariance']:.4g} var {means['variance']:.4g} cov {means['covariance']:.4g} "
         f"-> {run_dir}")
    return summary
