"""Laplacian Eigenmaps on all training and test images together (spec S7).

Features of a seeded untrained CNN, a symmetric kNN graph over every image, and the
smallest non-trivial generalised eigenvectors of its Laplacian as the representation.
The run folder holds them as a representation table, so every evaluation command
reads it like a trained encoder. Images outside the graph (e.g. MNIST as anomalies)
are placed by the Nyström extension of the eigen-equation
(:func:`viclab.represent.table.nystrom_extend`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from viclab.ablate.graph import components, knn_table, laplacian_eigenmaps, symmetric_knn_graph
from viclab.config import EigenmapsConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.runtime import require_one_process
from viclab.data import load_images
from viclab.engine.rundir import RunFolder
from viclab.represent.encode import load_source, representations
from viclab.represent.table import TABLE, TableSplit, save_table

SUMMARY = "eigenmaps.json"


def run_eigenmaps(cfg: EigenmapsConfig, run_dir: str | Path, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Fit Laplacian Eigenmaps on a dataset's training and test images; write a run folder.

    Writes ``config.json``, ``meta.json``, ``representations.safetensors`` (``train`` and
    ``test`` splits, the eigenvalues) and ``eigenmaps.json`` (sizes, timings, spectrum).
    A finished run folder is not recomputed.

    Raises:
        DisconnectedGraphError: the kNN graph is disconnected (the message gives the
            component sizes); raise ``cfg.k``.
    """
    require_one_process("Laplacian Eigenmaps")
    run = RunFolder.open(run_dir, cfg, "auto", done=(TABLE, SUMMARY))
    for split in ("train", "test"):  # checked before the run folder is made: a wrong dataset leaves nothing
        load_images(cfg.dataset, split, cfg.data_dir)
    if run.finished is not None:
        ctx.echo(f"{run.path}: already fitted")
        return run.finished
    run.begin("cpu")
    t0 = time.perf_counter()
    parts = [representations(load_source(cfg.features, seed=cfg.seed), s, cfg.dataset, cfg.data_dir, ctx=ctx)
             for s in ("train", "test")]
    x = np.concatenate([p.features for p in parts])
    t1 = time.perf_counter()
    graph = symmetric_knn_graph(knn_table(x, cfg.k))
    t2 = time.perf_counter()
    count, _ = components(graph)
    maps = laplacian_eigenmaps(graph, cfg.dim, cfg.solver, cfg.seed)
    t3 = time.perf_counter()
    n_train = len(parts[0].features)
    splits = {"train": TableSplit(maps.embedding[:n_train], np.arange(n_train), "train"),
              "test": TableSplit(maps.embedding[n_train:], np.arange(len(x) - n_train), "test")}
    save_table(run.path / TABLE, "eigenmaps", cfg.dataset, splits, asdict(cfg),
               extra={"eigenvalues": maps.eigenvalues, "degrees": maps.degrees.astype(np.float32)})
    summary = {
        "nodes": len(x), "train_nodes": n_train, "test_nodes": len(x) - n_train, "feature_dim": x.shape[1],
        "edges": graph.nnz // 2, "components": count, "mean_degree": float(maps.degrees.mean()),
        "eigenvalues": maps.eigenvalues.tolist(), "trivial_eigenvalue": maps.trivial_eigenvalue,
        "seconds": {"features": t1 - t0, "graph": t2 - t1, "eigen": t3 - t2, "total": t3 - t0},
    }
    run.finish(SUMMARY, summary)
    ctx.echo(f"Laplacian Eigenmaps: {len(x)} {cfg.dataset} images ({n_train} train + {len(x) - n_train} test), "
         f"{cfg.k}-NN graph with {graph.nnz // 2} edges, 1 component; {cfg.dim} eigenvectors, eigenvalues "
         f"{maps.eigenvalues[0]:.2e}..{maps.eigenvalues[-1]:.3f} ({cfg.solver}); features {t1 - t0:.1f}s, graph "
         f"{t2 - t1:.1f}s, eigen {t3 - t2:.1f}s -> {run.path}")
    return summary

