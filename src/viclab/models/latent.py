"""Latent optimisation's "encoder": a free code per training image (spec S5)."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.models.projector import build_projector


class LatentCodes(nn.Module):
    """``index -> h(code[index])``: ``codes``, an ``nn.Embedding(N, dim)`` table (N(0, 1), sparse gradients for
    ``torch.optim.SparseAdam``) in place of the encoder f, then the MLP h, ``projector``."""

    def __init__(self, n: int, dim: int, projector: str) -> None:
        super().__init__()
        self.codes = nn.Embedding(n, dim, sparse=True)
        nn.init.normal_(self.codes.weight)
        self.projector, self.out_dim = build_projector(dim, projector)

    def forward(self, idx: Tensor) -> Tensor:
        """``(B,)`` image indices -> ``(B, d)`` projections."""
        return self.projector(self.codes(idx))


def build_latent(n: int, dim: int, projector: str) -> tuple[LatentCodes, int]:
    """Returns ``(module, projection_dim)``."""
    m = LatentCodes(n, dim, projector)
    return m, m.out_dim
