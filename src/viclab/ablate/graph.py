"""Neighbour graphs and Laplacian Eigenmaps (spec S5, S6, S7).

A graph is a symmetric ``scipy.sparse.csr_matrix`` of edge weights ``W (N, N)``. Laplacian Eigenmaps (Belkin & Niyogi,
2003) solve ``L y = lambda D y`` with ``L = D - W``; equivalently ``y = D^{-1/2} v`` for the eigenvectors ``v`` of the
normalised Laplacian ``L_sym = I - D^{-1/2} W D^{-1/2}``, which is what we decompose because it is symmetric and its
spectrum lies in ``[0, 2]``.

:func:`run_eigenmaps` (S7) embeds all training and test images at once, from the features of a seeded untrained CNN;
images outside the graph (e.g. MNIST as anomalies) are placed by the Nyström extension (:mod:`viclab.represent.table`).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from viclab.config import EigenmapsConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.runtime import require_one_process
from viclab.data import load_images
from viclab.engine.rundir import RunFolder
from viclab.represent.encode import load_source, representations
from viclab.represent.neighbors import nearest
from viclab.represent.table import TABLE, TableSplit, save_table

SOLVERS = ("arpack", "lobpcg", "sklearn")
SUMMARY = "eigenmaps.json"


def knn_table(x, k: int) -> np.ndarray:
    """Each row's ``k`` nearest other rows (exact L2, faiss), nearest first.

    Args:
        x: ``(N, D)`` points.
        k: neighbours per point; the point itself is never among them.

    Returns:
        ``(N, k)`` int64 indices.
    """
    n = len(x)
    if not 1 <= k < n:
        raise ViclabError(f"cannot take {k} nearest neighbours among {n} points; use 1 <= k < {n}")
    return nearest(x, x, k, exclude=np.arange(n))[1].astype(np.int64)


def saved_key(path: Path, info_path: Path) -> dict | None:
    """The JSON key saved beside a table at ``path`` (what it was made from), or ``None`` when either
    file is missing or the key is unreadable."""
    try:
        info = json.loads(info_path.read_text()) if path.exists() and info_path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None
    return info if isinstance(info, dict) else None


def symmetric_knn_graph(neighbours: np.ndarray) -> sp.csr_matrix:
    """Binary symmetric kNN graph: ``W_ij = 1`` if j is among i's neighbours or i among j's.

    Args:
        neighbours: ``(N, k)`` from :func:`knn_table`.

    Returns:
        ``(N, N)`` float64 CSR with a zero diagonal.
    """
    n, k = neighbours.shape
    a = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), neighbours.ravel())), shape=(n, n))
    w = a.maximum(a.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


def components(w: sp.spmatrix) -> tuple[int, np.ndarray]:
    """Number of connected components and each node's component id."""
    from scipy.sparse.csgraph import connected_components

    return connected_components(w, directed=False)


def _lanczos_top(s: sp.spmatrix, k: int, rng: np.random.Generator, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of symmetric ``s``, repeated eigenvalues included.

    Single-vector Lanczos (ARPACK) finds one vector per distinct eigenvalue: the Krylov space of one start vector holds
    one direction of each eigenspace, so the second copy of a repeated eigenvalue (a ring's cos/sin pair) is silently
    replaced by the next eigenvalue. Each further pass runs Lanczos again with the pairs found so far moved below the
    spectrum, which exposes the missing copies; it stops once a pass changes nothing among the ``k`` largest (one extra
    pass on a graph without repeated eigenvalues).
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = s.shape[0]
    mu, v = eigsh(s, k=k, which="LA", v0=rng.standard_normal(n), tol=tol)
    for _ in range(3):  # at most four passes in all
        shift = mu + 2.0  # found pairs go to -2, below the spectrum of s (within [-1, 1])
        op = LinearOperator((n, n), matvec=lambda x, v=v, shift=shift: s @ x - v @ (shift * (v.T @ x)),
                            dtype=np.float64)
        mu2, v2 = eigsh(op, k=min(k, n - v.shape[1] - 1), which="LA", v0=rng.standard_normal(n), tol=tol)
        top = np.sort(mu)[::-1][k - 1]
        new = mu2 > top + 10 * tol
        if not new.any():
            break
        mu, v = np.concatenate([mu, mu2[new]]), np.hstack([v, v2[:, new]])
        keep = np.argsort(-mu)[:k]
        mu, v = mu[keep], v[:, keep]
    return mu, v


class DisconnectedGraphError(ViclabError):
    """The graph has several components: its Laplacian's null space is not one vector."""


@dataclass(frozen=True)
class Eigenmaps:
    """Laplacian Eigenmaps of a connected graph.

    Attributes:
        embedding: ``(N, dim)`` generalised eigenvectors ``y`` (``L y = lambda D y``),
            smallest non-trivial eigenvalue first, each scaled to ``y^T D y = 1``.
        eigenvalues: ``(dim,)`` the matching eigenvalues of ``L_sym``, ascending.
        trivial_eigenvalue: the dropped smallest one (0 up to solver tolerance).
        degrees: ``(N,)`` node degrees ``D``.
    """

    embedding: np.ndarray
    eigenvalues: np.ndarray
    trivial_eigenvalue: float
    degrees: np.ndarray


def laplacian_eigenmaps(w: sp.spmatrix, dim: int, solver: str = "arpack", seed: int = 0,
                        tol: float = 1e-6) -> Eigenmaps:
    """The ``dim`` smallest non-trivial eigenvectors of a graph's normalised Laplacian.

    Args:
        w: ``(N, N)`` symmetric non-negative weights (zero diagonal).
        dim: embedding dimension (eigenvectors kept after dropping the trivial one).
        solver: ``arpack`` (Lanczos on ``D^{-1/2} W D^{-1/2}``, largest end, with deflated passes that recover repeated
            eigenvalues; the fastest), ``lobpcg`` (scipy, smallest end of ``L_sym``) or ``sklearn``
            (``sklearn.manifold.spectral_embedding``: ARPACK shift-invert).
        seed: start vector / block seed, for reproducible signs and iterations.
        tol: eigen-solver tolerance.

    Raises:
        DisconnectedGraphError: the graph has more than one component (its smallest
            eigenvectors would only mark the components).
    """
    from scipy.sparse.linalg import lobpcg

    if solver not in SOLVERS:
        raise ViclabError(f"unknown eigen-solver {solver!r}; choose one of: {', '.join(SOLVERS)}")
    w = sp.csr_matrix(w, dtype=np.float64)
    n = w.shape[0]
    if not 1 <= dim <= n - 2:
        raise ViclabError(f"cannot take {dim} non-trivial eigenvectors of a {n}-node graph; use 1 <= dim <= {n - 2}")
    count, label = components(w)
    if count > 1:
        sizes = np.sort(np.bincount(label))[::-1]
        shown = ", ".join(str(s) for s in sizes[:5]) + (", ..." if count > 5 else "")
        raise DisconnectedGraphError(
            f"the graph has {count} connected components (sizes {shown}): its Laplacian eigenvectors would only "
            "separate the components; use more neighbours per point")
    degrees = np.asarray(w.sum(axis=1)).ravel()
    d_isqrt = 1.0 / np.sqrt(degrees)
    s = sp.diags(d_isqrt) @ w @ sp.diags(d_isqrt)  # L_sym = I - s
    rng = np.random.default_rng(seed)
    if solver == "arpack":
        # The smallest eigenvalues of L_sym are the largest algebraic ones of s.
        mu, v = _lanczos_top(s, dim + 1, rng, tol)
        lam = 1.0 - mu
    elif solver == "lobpcg":
        x0 = rng.standard_normal((n, dim + 1))
        x0[:, 0] = np.sqrt(degrees)  # the known null vector speeds convergence
        lam, v = lobpcg(sp.identity(n, format="csr") - s, x0, largest=False, tol=tol, maxiter=2000)
    else:
        from sklearn.manifold import spectral_embedding

        # sklearn returns D^{-1/2}-scaled eigenvectors of L_sym, trivial one first; its eigenvalues are not returned,
        # so take the Rayleigh quotients of L_sym.
        y = spectral_embedding(w, n_components=dim + 1, eigen_solver="arpack", random_state=seed,
                               eigen_tol=tol, norm_laplacian=True, drop_first=False)
        v = y * np.sqrt(degrees)[:, None]
        v /= np.linalg.norm(v, axis=0)
        lam = np.einsum("ij,ij->j", v, v - s @ v)
    order = np.argsort(lam)
    lam, v = lam[order], v[:, order]
    y = v[:, 1:] * d_isqrt[:, None]  # y^T D y = v^T v = 1
    # Eigenvectors have no sign: fix it so the largest-magnitude entry is positive.
    y *= np.sign(y[np.abs(y).argmax(axis=0), np.arange(y.shape[1])])
    return Eigenmaps(y.astype(np.float32), lam[1:].astype(np.float64), float(lam[0]), degrees)


def run_eigenmaps(cfg: EigenmapsConfig, run_dir: str | Path, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Fit Laplacian Eigenmaps on a dataset's training and test images; write a run folder.

    Writes ``config.json``, ``meta.json``, ``representations.safetensors`` (``train`` and ``test`` splits, the
    eigenvalues) and ``eigenmaps.json`` (sizes, timings, spectrum). A finished run folder is not recomputed.

    Raises:
        DisconnectedGraphError: the kNN graph is disconnected (the message gives the component sizes); raise ``cfg.k``.
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
    parts = [representations(load_source(cfg.features, seed=cfg.seed), s, cfg.dataset,
                             ctx=replace(ctx, data_dir=cfg.data_dir)) for s in ("train", "test")]
    x = np.concatenate([p.features for p in parts])
    t1 = time.perf_counter()
    graph = symmetric_knn_graph(knn_table(x, cfg.k))
    t2 = time.perf_counter()
    maps = laplacian_eigenmaps(graph, cfg.dim, cfg.solver, cfg.seed)
    t3 = time.perf_counter()
    n_train = len(parts[0].features)
    splits = {"train": TableSplit(maps.embedding[:n_train], np.arange(n_train), "train"),
              "test": TableSplit(maps.embedding[n_train:], np.arange(len(x) - n_train), "test")}
    save_table(run.path / TABLE, "eigenmaps", cfg.dataset, splits, asdict(cfg),
               extra={"eigenvalues": maps.eigenvalues, "degrees": maps.degrees.astype(np.float32)})
    summary = {"nodes": len(x), "train_nodes": n_train, "test_nodes": len(x) - n_train, "feature_dim": x.shape[1],
               "edges": graph.nnz // 2, "components": 1,  # laplacian_eigenmaps refuses a disconnected graph
               "mean_degree": float(maps.degrees.mean()), "eigenvalues": maps.eigenvalues.tolist(),
               "trivial_eigenvalue": maps.trivial_eigenvalue,
               "seconds": {"features": t1 - t0, "graph": t2 - t1, "eigen": t3 - t2, "total": t3 - t0}}
    run.finish(SUMMARY, summary)
    ctx.echo(f"Laplacian Eigenmaps: {len(x)} {cfg.dataset} images ({n_train} train + {len(x) - n_train} test), "
             f"{cfg.k}-NN graph with {graph.nnz // 2} edges, 1 component; {cfg.dim} eigenvectors, eigenvalues "
             f"{maps.eigenvalues[0]:.2e}..{maps.eigenvalues[-1]:.3f} ({cfg.solver}); features {t1 - t0:.1f}s, graph "
             f"{t2 - t1:.1f}s, eigen {t3 - t2:.1f}s -> {run.path}")
    return summary

