"""Checkpoints that resume bit-exactly on CPU, and the final encoder weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viclab.config import Config
from viclab.errors import ViclabError
from viclab.io import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Atomically write ``state`` (model, optimiser, scheduler, RNG states, epoch, step, config)."""
    atomic_write(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ViclabError(f"no checkpoint at {path}: the run never finished an epoch; start it again") from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ViclabError(f"cannot read checkpoint {path} ({str(e).splitlines()[0]}); "
                          "the file is damaged, start a new run") from None


def save_encoder(path: Path, encoder: nn.Module, cfg: Config, feature_dim: int) -> None:
    """Write the encoder's state dict as safetensors, its config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"config": cfg.to_json(), "backbone": cfg.model.backbone, "feature_dim": str(feature_dim)}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_encoder(path: str | Path) -> tuple[nn.Module, int, Config]:
    """Rebuild an encoder from ``encoder.safetensors``; returns ``(module, feature_dim, config)``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from viclab.models import build_backbone

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except FileNotFoundError:
        raise ViclabError(f"weights file {path} does not exist; check the path") from None
    except (SafetensorError, OSError) as e:
        raise ViclabError(f"cannot read weights {path} ({e}); expected a viclab .safetensors file") from None
    if "config" not in meta:
        raise ViclabError(f"{path} has no viclab config in its metadata; was it written by viclab train?")
    cfg = Config.from_dict(json.loads(meta["config"]))
    encoder, dim = build_backbone(cfg.model.backbone)
    encoder.load_state_dict(state)
    return encoder, dim, cfg
