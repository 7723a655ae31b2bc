"""Anomaly scores as pure functions of representations (higher = more anomalous).

The VICReg terms per image follow spec §1's equations: the invariance of an image is the
term between its views' projections, averaged over every pair of its ``K`` views; its
*contribution* to the variance or covariance term is the change of that term when the image
joins the ``N`` normal projections, ``N * (T(normal + image) - T(normal))``, computed exactly by
a rank-one update of the normal mean and scatter (float64).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from viclab.core.errors import ViclabError
from viclab.represent.neighbors import knn_anomaly_scores


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero): L2 between them ranks as cosine distance."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1)).astype(np.float32)


def knn_scores(reference: np.ndarray, queries: np.ndarray, k: int, cosine: bool = False) -> np.ndarray:
    """Mean distance to the ``k`` nearest normal representations (spec A1).

    Args:
        reference: ``(N, D)`` normal representations.
        queries: ``(M, D)``.
        k: neighbours averaged; at most ``N``.
        cosine: compare unit vectors (L2 between them is ``sqrt(2 - 2 cos)``).

    Returns:
        ``(M,)`` float32.
    """
    if k > len(reference):
        raise ViclabError(f"detect.k={k} is larger than the {len(reference)} normal images fitted on; use "
                          f"detect.k={len(reference)} or fewer")
    if cosine:
        reference, queries = unit_rows(reference), unit_rows(queries)
    return knn_anomaly_scores(reference, queries, k)


def fit_gaussian(x: np.ndarray, shrinkage: float | None = None) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean and precision of ``(N, D)`` representations under a shrunk covariance.

    ``shrinkage=None`` uses the Ledoit-Wolf estimate; a number ``s`` is sklearn's
    ``ShrunkCovariance``: ``(1 - s) S + s * trace(S) / D * I`` with ``S`` the maximum-likelihood
    covariance.

    Returns:
        ``(mean (D,), precision (D, D), shrinkage used)``, float64.
    """
    from sklearn.covariance import LedoitWolf, ShrunkCovariance

    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        raise ViclabError(f"a Mahalanobis detector needs at least 2 normal images, got {len(x)}")
    est = LedoitWolf() if shrinkage is None else ShrunkCovariance(shrinkage=shrinkage)
    est.fit(x)
    used = float(est.shrinkage_ if shrinkage is None else shrinkage)
    cov = est.covariance_
    eig = np.linalg.eigvalsh(cov)
    if eig[0] <= 1e-12 * max(eig[-1], 1e-300):
        # inv() rarely raises on a numerically singular matrix: it returns entries near 1e15 instead.
        raise ViclabError(f"the normal representations' covariance is singular ({len(x)} images in {x.shape[1]} "
                          "dimensions); use a shrinkage above 0, e.g. detect.shrinkage=0.1, or more normal images")
    try:
        precision = np.linalg.inv(cov)
    except np.linalg.LinAlgError:
        raise ViclabError("the normal representations' covariance is singular; use a shrinkage above 0, e.g. "
                          "detect.shrinkage=0.1") from None
    return est.location_, precision, used


def mahalanobis_scores(x: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``sqrt((x - mean)^T P (x - mean))`` per row of ``(M, D)`` ``x``; ``(M,)`` float64."""
    d = np.asarray(x, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("md,de,me->m", d, precision, d), 0.0))


def view_invariance(z: Tensor) -> Tensor:
    """Per-image invariance between ``K`` views.

    Args:
        z: ``(K, M, d)`` projections of ``K`` views of ``M`` images.

    Returns:
        ``(M,)``: the mean over the ``K(K-1)/2`` view pairs of ``||z_a - z_b||^2 / d`` (spec §1's
        invariance term of one image's two views). Computed as ``2K/(K-1) * mean_a ||z_a - z_mean||^2 / d``.
    """
    k, _, d = z.shape
    z = z.double()
    spread = (z - z.mean(0)).pow(2).sum((0, 2)) / (k * d)
    return spread * (2 * k / (k - 1))


class NormalStats:
    """The normal projections' count, mean and scatter (float64): what an image is added to.

    Args:
        z: ``(N, d)`` normal projections, ``N >= 2``.
    """

    def __init__(self, z: Tensor | None = None, *, n: int = 0, mean: Tensor | None = None,
                 scatter: Tensor | None = None) -> None:
        if z is not None:
            z = z.double()
            n, mean = len(z), z.mean(0)
            zc = z - mean
            scatter = zc.T @ zc
        self.n, self.mean, self.scatter = n, mean, scatter

    def tensors(self) -> dict[str, Tensor]:
        return {"n": torch.tensor(self.n), "mean": self.mean, "scatter": self.scatter}

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor]) -> NormalStats:
        return cls(n=int(t["n"]), mean=t["mean"].double(), scatter=t["scatter"].double())


def _variance_term(var: Tensor, gamma: float, eps: float, variant: str) -> Tensor:
    """spec §1's hinge on per-dimension variances ``var (..., d)``."""
    sigma = var.add(eps).sqrt() if variant == "official" else var.clamp_min(0).sqrt().add(eps)
    return torch.relu(gamma - sigma).mean(-1)


def term_contributions(z: Tensor, stats: NormalStats, gamma: float = 1.0, eps: float = 1e-4,
                       variant: str = "spec") -> tuple[Tensor, Tensor]:
    """Each image's contribution to the variance and the covariance term of the normal projections.

    Adding ``x`` to ``N`` points of mean ``m`` and scatter ``S`` gives ``N + 1`` points of scatter
    ``S + N/(N+1) (x - m)(x - m)^T`` (unbiased covariance: divided by ``N``), so both terms of the
    enlarged set have closed forms; ``||C + a u u^T||_F^2 = ||C||^2 + 2a u^T C u + a^2 ||u||^4``.

    Args:
        z: ``(M, d)`` projections of the images scored.
        stats: the normal projections' :class:`NormalStats`.

    Returns:
        ``(variance (M,), covariance (M,))``: ``N * (T(normal + x) - T(normal))`` per image, float64.
    """
    n, mean, scatter = stats.n, stats.mean, stats.scatter
    d = scatter.shape[0]
    u = z.double() - mean
    a = n / (n + 1)
    cov0 = scatter / (n - 1)
    diag0 = scatter.diagonal()
    var_before = _variance_term(diag0 / (n - 1), gamma, eps, variant)
    var_after = _variance_term((diag0 + a * u.pow(2)) / n, gamma, eps, variant)
    # Off-diagonal sum of squares of C' = (S + a u u^T) / n.
    frob = (scatter.pow(2).sum() + 2 * a * ((u @ scatter) * u).sum(1) + a * a * u.pow(2).sum(1).pow(2)) / n ** 2
    diag_sq = (diag0 + a * u.pow(2)).pow(2).sum(1) / n ** 2
    cov_after = (frob - diag_sq) / d
    cov_before = (cov0.pow(2).sum() - cov0.diagonal().pow(2).sum()) / d
    return n * (var_after - var_before), n * (cov_after - cov_before)
