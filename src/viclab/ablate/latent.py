"""Latent optimisation (spec S5): VICReg on a free code per training image, no encoder.

``naive`` pairs every code with itself, the analogue of two generated views of one image: both views share the code, so
invariance is identically 0 and nothing links a code to its pixels. ``graph`` (the correction) pairs each code with the
code of one of its ``graph_k`` nearest images in a fixed data space, which turns the objective into a
Laplacian-Eigenmaps-like one. The codes are evaluated by a linear probe trained on ``probe_fraction`` of them and tested
on the rest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.ablate.graph import knn_table, saved_key
from viclab.ablate.neighbours import sample_neighbours
from viclab.config import LatentConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_save_npy, atomic_write_text
from viclab.core.runtime import intra_op_threads, others_busy_cores, require_one_process, select_runtime
from viclab.data import ImageData, load_images
from viclab.data.types import data_fingerprint
from viclab.engine import RunFolder, fit
from viclab.engine.loop import read_checkpoint
from viclab.engine.vicreg import TERMS, vicreg_objective
from viclab.losses import VICRegLoss
from viclab.models.latent import build_latent
from viclab.represent.encode import load_source, representations
from viclab.represent.table import TABLE, TableSplit, save_table

SUMMARY, GRAPH, GRAPH_INFO = "latent.json", "graph.npy", "graph.json"
CHECKPOINT_SECONDS = 30.0  # an epoch takes seconds: checkpoint at most this often (and at the end)
BUSY_CORES = 0.5  # other processes' load from which the optimisation loop runs on one thread


def graph_neighbours(cfg: LatentConfig, data: ImageData, run_dir: Path, ctx: Context, started: bool) -> np.ndarray:
    """``(n, graph_k)`` fixed data-space neighbours, saved in the run folder and reused on resume: keyed
    (``graph.json``) by the feature encoder's weights, the images and ``graph_k``; another key rebuilds
    it, or refuses a run that has already trained on it (``started``)."""
    path, info_path = run_dir / GRAPH, run_dir / GRAPH_INFO
    source = load_source(cfg.graph_features, seed=cfg.seed)
    key = {"weights_sha256": source.weights_sha256, "images": data_fingerprint(data), "k": cfg.graph_k}
    if saved_key(path, info_path) == key:
        return np.load(path)
    if started:
        raise ViclabError(f"the neighbour graph of {run_dir} came from other features or images than "
                          f"{cfg.graph_features} gives now, and the run has already trained on it; start a new run")
    reps = representations(source, "train", cfg.dataset, ctx=dataclasses.replace(ctx, data_dir=cfg.data_dir))
    table = knn_table(reps.features[:len(data)], cfg.graph_k)
    atomic_save_npy(path, table)
    atomic_write_text(info_path, json.dumps(key, indent=2) + "\n")
    return table


def partners(idx: torch.Tensor, neighbours: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """The second "view" of each anchor: itself (naive) or a random graph neighbour."""
    return idx if neighbours is None else sample_neighbours(neighbours, idx, gen)


def run_latent(cfg: LatentConfig, run_dir: str | Path, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Optimise one code per training image with the VICReg objective; write a run folder.

    Writes ``config.json``, ``meta.json``, ``metrics.jsonl``, ``checkpoint.pt`` (resumable), ``graph.npy``
    (``graph`` pairs), ``representations.safetensors`` (the codes: ``train`` = the probe's share, ``test`` =
    the rest) and ``latent.json``. Trains in one process (the codes are one table).
    """
    require_one_process("latent optimisation")
    run = RunFolder.open(run_dir, cfg, "auto", done=(TABLE, SUMMARY))
    # The data is checked before the run folder is made: a wrong dataset leaves nothing behind.
    data = load_images(cfg.dataset, "train", cfg.data_dir).subset(cfg.subset)
    n = len(data)
    if cfg.batch_size > n:
        raise ViclabError(f"batch_size={cfg.batch_size} is larger than the {n} training images; use {n} or fewer")
    if run.finished is not None:
        ctx.echo(f"{run.path}: already trained")
        return run.finished
    torch.manual_seed(cfg.seed)
    model, _ = build_latent(n, cfg.dim, cfg.projector)
    ckpt = read_checkpoint(run, model)
    objective = vicreg_objective(model, model, VICRegLoss(**dataclasses.asdict(cfg.loss)),
                                 [torch.optim.SparseAdam(model.codes.parameters(), lr=cfg.lr),
                                  torch.optim.Adam(model.projector.parameters(), lr=cfg.projector_lr)],
                                 None, "start a new run with a lower --lr")
    neighbours: torch.Tensor | None = None

    def pairs(started: bool):
        """``(idx, gen) -> (idx, partner)``: each anchor's code and its partner's."""
        nonlocal neighbours
        if cfg.pairs == "graph":
            neighbours = torch.from_numpy(graph_neighbours(cfg, data, run.path, ctx, started))
        return lambda idx, gen: (idx, partners(idx, neighbours, gen))

    # A step is ~100 ops of well under a millisecond each. Alone on the machine, two threads run them 1.65x faster
    # than one; beside a busy process every op waits at its OpenMP barrier for a descheduled thread, and two threads
    # took 3.9x their quiet time where one took 1.4x (benchmarks/latent_load.py). So: one thread beside a busy core.
    busy = others_busy_cores()
    threads = 1 if busy >= BUSY_CORES else torch.get_num_threads()
    if threads < torch.get_num_threads():
        ctx.echo(f"latent optimisation: other processes keep {busy:.1f} cores busy, so it runs on one thread")
    with intra_op_threads(threads):
        result = fit(run, objective, pairs, n=n, batch_size=cfg.batch_size, epochs=cfg.epochs, seed=cfg.seed,
                     rt=select_runtime("cpu", "fp32"), ckpt=ckpt, checkpoint_seconds=CHECKPOINT_SECONDS,
                     ctx=ctx, epoch_lines=False)
    means = result.train
    codes = model.codes.weight.detach().numpy()
    perm = np.random.default_rng(cfg.seed).permutation(n)  # the probe's seeded share of the codes, and the rest
    cut = int(round(cfg.probe_fraction * n))
    fit_idx, held = np.sort(perm[:cut]), np.sort(perm[cut:])
    save_table(run.path / TABLE, "latent", cfg.dataset,
               {"train": TableSplit(codes[fit_idx], fit_idx, "train"), "test": TableSplit(codes[held], held, "train")},
               dataclasses.asdict(cfg))
    summary: dict[str, Any] = {"pairs": cfg.pairs, "codes": n, "dim": cfg.dim, "epochs": cfg.epochs,
                               "steps": result.step, "last_epoch": means, "seconds": result.seconds,
                               "probe_train": len(fit_idx), "probe_test": len(held)}
    if neighbours is not None:
        labels = data.labels.numpy()
        summary["graph_same_class"] = float((labels[neighbours.numpy()] == labels[:, None]).mean())
    run.finish(SUMMARY, summary)
    ctx.echo(f"latent optimisation ({cfg.pairs} pairs): {n} codes of {cfg.dim}, {cfg.epochs} epochs in "
             f"{result.seconds:.1f}s; last epoch {' '.join(f'{t[:3]} {means[t]:.4g}' for t in TERMS[1:])} "
             f"-> {run.path}")
    return summary
