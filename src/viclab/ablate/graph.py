"""Neighbour graphs and Laplacian Eigenmaps (spec S5, S6, S7).

A graph is a symmetric ``scipy.sparse.csr_matrix`` of edge weights ``W (N, N)``.
Laplacian Eigenmaps (Belkin & Niyogi, 2003) solve ``L y = lambda D y`` with
``L = D - W``; equivalently ``y = D^{-1/2} v`` for the eigenvectors ``v`` of the
normalised Laplacian ``L_sym = I - D^{-1/2} W D^{-1/2}``, which is what we
decompose because it is symmetric and its spectrum lies in ``[0, 2]``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from viclab.core.errors import ViclabError
from viclab.represent.neighbors import nearest

SOLVERS = ("arpack", "lobpcg", "sklearn")


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
    _, idx = nearest(x, x, k, exclude=np.arange(n))
    return idx.astype(np.int64)


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
    rows = np.repeat(np.arange(n), k)
    a = sp.csr_matrix((np.ones(n * k), (rows, neighbours.ravel())), shape=(n, n))
    w = a.maximum(a.T).tocsr()
    w.setdiag(0)
    w.eliminate_zeros()
    return w


def components(w: sp.spmatrix) -> tuple[int, np.ndarray]:
    """Number of connected components and each node's component id."""
    from scipy.sparse.csgraph import connected_components

    return connected_components(w, directed=False)


def _lanczos_top(s: sp.spmatrix, k: int, rng: np.random.Generator, tol: float,
                 max_passes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest eigenpairs of symmetric ``s``, repeated eigenvalues included.

    Single-vector Lanczos (ARPACK) finds one vector per distinct eigenvalue: the
    Krylov space of one start vector holds one direction of each eigenspace, so the
    second copy of a repeated eigenvalue (a ring's cos/sin pair) is silently
    replaced by the next eigenvalue. Each further pass runs Lanczos again with the
    pairs found so far moved below the spectrum, which exposes the missing copies;
    it stops once a pass changes nothing among the ``k`` largest (one extra pass on a
    graph without repeated eigenvalues).
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    n = s.shape[0]
    mu, v = eigsh(s, k=k, which="LA", v0=rng.standard_normal(n), tol=tol)
    for _ in range(max_passes - 1):
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
        solver: ``arpack`` (Lanczos on ``D^{-1/2} W D^{-1/2}``, largest end, with
            deflated passes that recover repeated eigenvalues; the fastest),
            ``lobpcg`` (scipy, smallest end of ``L_sym``) or ``sklearn``
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
        lap = sp.identity(n, format="csr") - s
        x0 = rng.standard_normal((n, dim + 1))
        x0[:, 0] = np.sqrt(degrees)  # the known null vector speeds convergence
        lam, v = lobpcg(lap, x0, largest=False, tol=tol, maxiter=2000)
    else:
        from sklearn.manifold import spectral_embedding

        # sklearn returns D^{-1/2}-scaled eigenvectors of L_sym, trivial one first; its
        # eigenvalues are not returned, so take the Rayleigh quotients of L_sym.
        y = spectral_embedding(w, n_components=dim + 1, eigen_solver="arpack", random_state=seed,
                               eigen_tol=tol, norm_laplacian=True, drop_first=False)
        v = y * np.sqrt(degrees)[:, None]
        v /= np.linalg.norm(v, axis=0)
        lam = np.einsum("ij,ij->j", v, v - s @ v)
    order = np.argsort(lam)
    lam, v = lam[order], v[:, order]
    y = v[:, 1:] * d_isqrt[:, None]  # y^T D y = v^T v = 1
    # Eigenvectors have no sign: fix it so the largest-magnitude entry is positive.
    big = np.abs(y).argmax(axis=0)
    y *= np.sign(y[big, np.arange(y.shape[1])])
    return Eigenmaps(y.astype(np.float32), lam[1:].astype(np.float64), float(lam[0]), degrees)
