"""The two-part VICReg network: encoder f then projector h."""

from __future__ import annotations

from torch import Tensor, nn

from viclab.config import Config, ModelConfig
from viclab.models.projector import build_projector
from viclab.models.registry import build_backbone

SHIFTS = 4  # the shift objective's shifts: rotations by 0, 90, 180 and 270 degrees


class VICRegModel(nn.Module):
    """``x -> h(f(x))``: the ``encoder`` (``(B, 3, H, W) -> (B, feature_dim)``, what evaluation keeps), then the
    ``projector`` (``(B, feature_dim) -> (B, d)``); with the shift objective also a ``shift_head``, a linear map
    ``(B, feature_dim) -> (B, shifts)`` naming which shift an input underwent."""

    def __init__(self, encoder: nn.Module, projector: nn.Module, feature_dim: int, shifts: int = 0) -> None:
        super().__init__()
        self.encoder, self.projector, self.feature_dim = encoder, projector, feature_dim
        self.shift_head = nn.Linear(feature_dim, shifts) if shifts else None

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` views -> ``(B, d)`` projections."""
        return self.projector(self.encoder(x))


def build_vicreg_model(cfg: ModelConfig, shifts: int = 0) -> tuple[VICRegModel, int]:
    """Returns ``(model, projection_dim)``; ``shifts`` > 0: with a shift head of that many classes."""
    encoder, feat = build_backbone(cfg.backbone)
    projector, out = build_projector(feat, cfg.projector)
    return VICRegModel(encoder, projector, feat, shifts), out


def build_model(cfg: Config) -> tuple[VICRegModel, int]:
    """The network a training config trains: VICReg's, with the shift head under ``train.objective`` ``shift`` or
    ``rotation``."""
    return build_vicreg_model(cfg.model, 0 if cfg.train.objective == "vicreg" else SHIFTS)
