"""Shift-aware VICReg (CSI's lesson, Tack et al. 2020, on VICReg): distribution-shifting transformations (rotations
by multiples of 90°) make *distinct* samples, never views of one another, and a head learns to name the shift."""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn

from viclab.losses.vicreg import VICRegLoss, at_least_fp32


def shift_prediction(logits: Tensor, shifts: Tensor) -> Tensor:
    """Cross-entropy of ``(B, S)`` shift ``logits`` against the ``(B,)`` shifts applied (integers in ``[0, S)``)."""
    return F.cross_entropy(at_least_fp32(logits), shifts)


class ShiftTerms(NamedTuple):
    """The weighted total, VICReg's three unweighted terms and the shift prediction's cross-entropy."""

    loss: Tensor
    invariance: Tensor
    variance: Tensor
    covariance: Tensor
    shift: Tensor


class ShiftVICRegLoss(nn.Module):
    """``L = VICReg(z, z') + w * [CE(l, s) + CE(l', s)] / 2`` over a batch of shifted copies.

    Args:
        vicreg: the VICReg loss of the projections (its weights lambda, mu, nu).
        shift_weight: ``w``, the shift prediction's weight.
    """

    def __init__(self, vicreg: VICRegLoss, shift_weight: float) -> None:
        super().__init__()
        self.vicreg, self.shift_weight = vicreg, shift_weight

    def forward(self, z: Tensor, z_prime: Tensor, logits: Tensor, logits_prime: Tensor, shifts: Tensor) -> ShiftTerms:
        """``z``, ``z_prime``: ``(B, d)`` projections of the two views of ``B`` shifted copies; ``logits``,
        ``logits_prime``: ``(B, S)`` their shift head's outputs; ``shifts``: ``(B,)`` each copy's shift."""
        terms = self.vicreg(z, z_prime)
        ce = (shift_prediction(logits, shifts) + shift_prediction(logits_prime, shifts)) / 2
        return ShiftTerms(terms.loss + self.shift_weight * ce, terms.invariance, terms.variance, terms.covariance, ce)
