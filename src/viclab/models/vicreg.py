"""The two-part VICReg network: encoder f then projector h."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.config import ModelConfig
from viclab.models.projector import build_projector
from viclab.models.registry import build_backbone


class VICRegModel(nn.Module):
    """``x -> h(f(x))``: the ``encoder`` (``(B, 3, H, W) -> (B, feature_dim)``, what evaluation keeps), then the
    ``projector`` (``(B, feature_dim) -> (B, d)``)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.encoder, self.projector, self.feature_dim = encoder, projector, feature_dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` views -> ``(B, d)`` projections."""
        return self.projector(self.encoder(x))


def build_vicreg_model(cfg: ModelConfig) -> tuple[VICRegModel, int]:
    """Returns ``(model, projection_dim)``."""
    encoder, feat = build_backbone(cfg.backbone)
    projector, out = build_projector(feat, cfg.projector)
    return VICRegModel(encoder, projector, feat), out
