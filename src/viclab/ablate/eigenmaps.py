"""Laplacian Eigenmaps on all training and test images together (spec S7).

Features of a seeded untrained CNN, a symmetric kNN graph over every image, and the
smallest non-trivial generalised eigenvectors of its Laplacian as the representation.
The run folder holds them as a representation table, so every evaluation command
reads it like a trained encoder. Images outside the graph (e.g. MNIST as anomalies)
are placed by the Nyström extension of the eigen-equation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from viclab.ablate.graph import components, knn_table, laplacian_eigenmaps, symmetric_knn_graph
from viclab.ablate.runs import begin_run, finish_run
from viclab.config import EigenmapsConfig
from viclab.data import load_images
from viclab.eval.table import TABLE, RepresentationTable, TableSplit, save_table
from viclab.io import check_writable_dir

SUMMARY = "eigenmaps.json"


def nystrom_extend(embedding: np.ndarray, eigenvalues: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Place new points in a Laplacian Eigenmaps embedding (Bengio et al., 2004).

    The generalised eigenvectors satisfy ``y_i = (1 / (1 - lambda)) * sum_j W_ij y_j / d_i``.
    A new point joined to its ``k`` nearest nodes by unit edges (the graph's own rule) gets
    the same formula: the mean of its neighbours' coordinates divided by ``1 - lambda``.

    Args:
        embedding: ``(N, dim)`` node coordinates ``y``.
        eigenvalues: ``(dim,)`` matching eigenvalues of the normalised Laplacian.
        neighbours: ``(M, k)`` node indices of each new point's nearest nodes.

    Returns:
        ``(M, dim)`` float32.
    """
    return (embedding[neighbours].mean(axis=1) / (1.0 - eigenvalues)).astype(np.float32)


def _graph_features(cfg: EigenmapsConfig, dataset: str, split: str, data_dir: str | None, progress: bool):
    from viclab.eval.features import load_source, representations

    return representations(load_source(cfg.features, seed=cfg.seed), split, dataset, data_dir, progress=progress)


def nystrom_extender(table: RepresentationTable, extra: dict[str, np.ndarray]) -> Callable[..., np.ndarray]:
    """``(dataset, split, data_dir) -> (M, dim)`` for an eigenmaps table (see :func:`nystrom_extend`)."""
    from viclab.eval.neighbors import nearest

    cfg = EigenmapsConfig(**table.config)
    order = ("train", "test")

    def extend(dataset: str, split: str, data_dir: str | None) -> np.ndarray:
        nodes = np.concatenate([_graph_features(cfg, table.dataset, s, data_dir, False).features
                                [table.splits[s].index] for s in order])
        new = _graph_features(cfg, dataset, split, data_dir, False).features
        _, nb = nearest(nodes, new, cfg.k)
        y = np.concatenate([table.splits[s].features for s in order])
        return nystrom_extend(y, extra["eigenvalues"], nb)

    return extend


def run_eigenmaps(cfg: EigenmapsConfig, run_dir: str | Path, progress: bool = True,
                  echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Fit Laplacian Eigenmaps on a dataset's training and test images; write a run folder.

    Writes ``config.json``, ``meta.json``, ``representations.safetensors`` (``train`` and
    ``test`` splits, the eigenvalues) and ``eigenmaps.json`` (sizes, timings, spectrum).
    A finished run folder is not recomputed.

    Raises:
        DisconnectedGraphError: the kNN graph is disconnected (the message gives the
            component sizes); raise ``cfg.k``.
    """
    run_dir = check_writable_dir(Path(run_dir), "run folder")
    for split in ("train", "test"):  # checked before the run folder is made: a wrong dataset leaves nothing
        load_images(cfg.dataset, split, cfg.data_dir)
    done = begin_run(run_dir, cfg, TABLE, SUMMARY)
    if done is not None:
        echo(f"{run_dir}: already fitted")
        return done
    t0 = time.perf_counter()
    parts = [_graph_features(cfg, cfg.dataset, s, cfg.data_dir, progress) for s in ("train", "test")]
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
    save_table(run_dir / TABLE, "eigenmaps", cfg.dataset, splits, asdict(cfg),
               extra={"eigenvalues": maps.eigenvalues, "degrees": maps.degrees.astype(np.float32)})
    summary = {
        "nodes": len(x), "train_nodes": n_train, "test_nodes": len(x) - n_train, "feature_dim": x.shape[1],
        "edges": graph.nnz // 2, "components": count, "mean_degree": float(maps.degrees.mean()),
        "eigenvalues": maps.eigenvalues.tolist(), "trivial_eigenvalue": maps.trivial_eigenvalue,
        "seconds": {"features": t1 - t0, "graph": t2 - t1, "eigen": t3 - t2, "total": t3 - t0},
    }
    finish_run(run_dir, SUMMARY, summary)
    echo(f"Laplacian Eigenmaps: {len(x)} {cfg.dataset} images ({n_train} train + {len(x) - n_train} test), "
         f"{cfg.k}-NN graph with {graph.nnz // 2} edges, 1 component; {cfg.dim} eigenvectors, eigenvalues "
         f"{maps.eigenvalues[0]:.2e}..{maps.eigenvalues[-1]:.3f} ({cfg.solver}); features {t1 - t0:.1f}s, graph "
         f"{t2 - t1:.1f}s, eigen {t3 - t2:.1f}s -> {run_dir}")
    return summary

