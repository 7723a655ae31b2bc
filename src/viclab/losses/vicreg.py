"""The VICReg objective (spec §1) on ``(B, d)`` projections ``z``, ``z_prime`` of two views: pure terms, a module."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from viclab.core.runtime import cat_over_ranks, is_distributed


def invariance(z: Tensor, z_prime: Tensor) -> Tensor:
    """Mean squared error over all ``B*d`` entries of the ``(B, d)`` projections of two views:
    ``(1/B) sum_i MSE(z_i, z'_i)``, a scalar tensor."""
    return (z - z_prime).pow(2).mean()


def variance(z: Tensor, gamma: float = 1.0, eps: float = 1e-4, variant: str = "spec") -> Tensor:
    """Hinge on the per-dimension standard deviation of ``(B, d)`` projections (``B >= 2``), a scalar tensor:
    ``(1/d) sum_j max(0, gamma - sigma_j)``, Var with 1/(B-1). ``variant="spec"`` uses ``sigma_j = sqrt(Var_j) + eps``;
    ``"official"`` (the facebookresearch/vicreg code) uses ``sqrt(Var_j + eps)``."""
    var = z.var(dim=0, unbiased=True)
    sigma = var.add(eps).sqrt() if variant == "official" else var.sqrt().add(eps)
    return torch.relu(gamma - sigma).mean()


def covariance(z: Tensor) -> Tensor:
    """Sum of squared off-diagonal covariances of ``(B, d)`` projections (``B >= 2``) over d:
    ``(1/d) sum_{i!=j} C(Z)_ij^2``, a scalar tensor."""
    b, d = z.shape
    zc = z - z.mean(dim=0)
    cov = (zc.T @ zc) / (b - 1)
    # sum of squares of all entries minus the diagonal's: avoids building a mask.
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / d


def at_least_fp32(z: Tensor) -> Tensor:
    """fp16 and bf16 as fp32; other dtypes as they are."""
    return z.float() if z.dtype in (torch.float16, torch.bfloat16) else z


class VICRegTerms(NamedTuple):
    """The weighted total and the three unweighted terms (each summed over both views)."""

    loss: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor


class VICRegLoss(nn.Module):
    """``L = lambda*inv + mu*[var(Z)+var(Z')] + nu*[cov(Z)+cov(Z')]`` (spec §1).

    In the ``official`` variant the variance part, and so the reported ``variance`` term, is halved: ``loss`` is
    always ``inv_weight*invariance + var_weight*variance + cov_weight*covariance``.

    Args:
        inv_weight, var_weight, cov_weight: lambda, mu, nu.
        gamma: target standard deviation.
        eps: numerical stabiliser in sigma.
        variant: ``"spec"`` or ``"official"``.
        gather_distributed: variance and covariance on the batch gathered from all processes (gradients flow
            back to each slice), so N processes of batch b match one of batch N*b. Off: the local batch.
    """

    def __init__(self, inv_weight: float = 25.0, var_weight: float = 25.0, cov_weight: float = 1.0, gamma: float = 1.0,
                 eps: float = 1e-4, variant: str = "spec", gather_distributed: bool = False) -> None:
        super().__init__()
        if variant not in ("spec", "official"):
            raise ValueError(f"variant must be 'spec' or 'official', got {variant!r}")
        self.inv_weight, self.var_weight, self.cov_weight = inv_weight, var_weight, cov_weight
        self.gamma, self.eps, self.variant = gamma, eps, variant
        self.gather_distributed = gather_distributed

    def forward(self, z: Tensor, z_prime: Tensor, local: Tensor | None = None) -> VICRegTerms:
        """Args: ``z``, ``z_prime``: ``(B, d)``; ``local``: multi-crop's small views ``(m * B, d)``, rows ``k * B + i``
        image ``i``'s ``k``-th. Returns :class:`VICRegTerms` of scalars.

        With ``local``, the invariance is the mean over the ``1 + 2m`` pairs (large, large) and (large, small), as
        SwAV and DINO pair their crops, and variance and covariance are the mean over the ``2 + m`` views times 2:
        without small views both are exactly the pair's."""
        # Statistics in fp32 even under autocast: variance/covariance of bf16 activations lose too many digits.
        z, z_prime = at_least_fp32(z), at_least_fp32(z_prime)
        small = [] if local is None else list(at_least_fp32(local).split(len(z)))
        inv = invariance(z, z_prime)
        if small:
            inv = (inv + sum(invariance(z, s) + invariance(z_prime, s) for s in small)) / (1 + 2 * len(small))
        views = [z, z_prime, *small]
        if self.gather_distributed and is_distributed():
            views = [cat_over_ranks(v) for v in views]  # the global batch, with gradients
        scale = 2 / len(views)
        var = scale * sum(variance(v, self.gamma, self.eps, self.variant) for v in views)
        if self.variant == "official":
            var = var / 2
        cov = scale * sum(covariance(v) for v in views)
        loss = self.inv_weight * inv + self.var_weight * var + self.cov_weight * cov
        return VICRegTerms(loss, inv, var, cov)
