"""Checkpoints that resume bit-exactly on CPU, and the final encoder weights."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from viclab.config import Config
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write

# The fix for a checkpoint that does not fit the run resuming from it.
FOREIGN_CHECKPOINT = "it was written by a run of another config; delete it to restart the run from its beginning"


def load_checkpoint(path: Path, keys: tuple[str, ...] = ("config", "epoch", "step", "model")) -> dict[str, Any]:
    """Read a checkpoint onto the CPU with ``weights_only=True`` (no code in it can run).

    Raises:
        ViclabError: the file is absent, unreadable, or lacks ``keys`` (never advising ``weights_only=False``).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ViclabError(f"no checkpoint at {path}: the run never finished an epoch; start it again") from None
    except Exception as e:  # damaged bytes raise anything from UnpicklingError to RuntimeError
        raise ViclabError(f"cannot read checkpoint {path} ({type(e).__name__}): it is damaged or not a viclab "
                          "checkpoint; delete it to restart the run from its beginning") from None
    if not isinstance(state, dict) or any(k not in state for k in keys):
        raise ViclabError(f"{path} is not a viclab checkpoint (it lacks {', '.join(keys)}); delete it to restart "
                          "the run from its beginning")
    return state


def load_state(module: nn.Module | torch.optim.Optimizer, state: dict[str, Any], source: Path, fix: str) -> None:
    """``module.load_state_dict(state)`` (a model or an optimiser), explaining any mismatch in one line."""
    try:
        module.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError, IndexError) as e:
        first = str(e).replace("\n", " ").replace("\t", "")[:300]
        raise ViclabError(f"{source} does not fit this model ({first}); {fix}") from None


def save_encoder(path: Path, encoder: nn.Module, cfg: Config, feature_dim: int) -> None:
    """Write the encoder's state dict as safetensors, its config in the metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    metadata = {"config": cfg.to_json(), "backbone": cfg.model.backbone, "feature_dim": str(feature_dim)}
    atomic_write(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def load_encoder(path: str | Path) -> tuple[nn.Module, int, Config]:
    """Rebuild an encoder from ``encoder.safetensors``; returns ``(module, feature_dim, config)``.

    Raises:
        ViclabError: the file is unreadable, has no viclab config, or holds non-finite weights or ones that do not fit.
    """
    from safetensors.torch import load_file, safe_open

    from viclab.models import build_backbone

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except FileNotFoundError:
        raise ViclabError(f"weights file {path} does not exist; check the path") from None
    except Exception as e:  # SafetensorError, OSError, and whatever a damaged header raises
        raise ViclabError(f"cannot read weights {path} ({type(e).__name__}: {e}); expected a viclab .safetensors "
                          "file") from None
    if "config" not in meta:
        raise ViclabError(f"{path} has no viclab config in its metadata; was it written by viclab train?")
    try:
        cfg_dict = json.loads(meta["config"])
    except json.JSONDecodeError as e:
        raise ViclabError(f"{path}: the config in its metadata is not JSON ({e}); the file is damaged") from None
    cfg = Config.from_dict(cfg_dict, origin=f"the config in {path}")
    encoder, dim = build_backbone(cfg.model.backbone)
    load_state(encoder, state, path, f"it is not a {cfg.model.backbone} encoder as its config says; the file "
                                     "is damaged or was edited")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise ViclabError(f"{path} holds non-finite weights (NaN or inf in {', '.join(bad[:3])}); the training that "
                          "wrote it diverged, train again with a lower optim.lr")
    return encoder, dim, cfg


def _unreadable_reason(e: BaseException) -> str:
    """Why torch or safetensors could not read a file, without torch's ``weights_only=False`` advice or colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return f"it holds a Python object ({refused.group(1)}), not only tensors, so it is not loaded"
    if isinstance(e, EOFError) or not text.strip():
        return f"it is empty or cut short ({type(e).__name__})"
    first = text.strip().splitlines()[0].split(". ")[0]  # the first sentence names the defect
    if "weights_only" in text or "Weights only" in first:
        return f"it is damaged or not a weights file ({type(e).__name__})"
    return f"it is damaged or not a weights file ({type(e).__name__}: {first[:200]})"


# Keys under which training scripts nest a backbone's weights (a full checkpoint, DINO's teacher).
_NESTED = ("state_dict", "model", "teacher", "student")


def load_pretrained(backbone: str, path: str | Path) -> tuple[nn.Module, int, int]:
    """A published backbone checkpoint (``.pth``/``.pt`` state dict or ``.safetensors``) as an encoder, e.g.
    VICReg's ``resnet50.pth`` as ``resnet50``, or DINO's ``dino_deitsmall16_pretrain.pth`` as ``vit_small`` (a ViT
    is rebuilt with the checkpoint's patch size, image size and depth). Read with ``weights_only=True``.

    Returns:
        ``(module, feature_dim, image_size)``: the side it was trained at (224, or a ViT's grid x patch size).

    Raises:
        ViclabError: the file is absent or unreadable, or its tensors do not fit ``backbone``.
    """
    from safetensors.torch import load_file

    from viclab.models import VisionTransformer, build_backbone, load_backbone_state_dict
    from viclab.models.vit import vit_like

    path = Path(path).expanduser()
    if not path.is_file():
        raise ViclabError(f"checkpoint {path} does not exist; check the path")
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle errors, a refused global, a damaged zip, OSError
        raise ViclabError(f"cannot read checkpoint {path}: {_unreadable_reason(e)}; download it again, or give a "
                          "PyTorch state dict (.pth) or a .safetensors file") from None
    while isinstance(state, dict) and len(state) <= 8 and any(isinstance(state.get(k), dict) for k in _NESTED):
        state = next(state[k] for k in _NESTED if isinstance(state.get(k), dict))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ViclabError(f"{path} holds no state dict of tensors; give the backbone's weights file")
    module, dim = build_backbone(backbone)
    size = 224  # torchvision's and VICReg's ResNets were trained on 224-px crops
    if isinstance(module, VisionTransformer):
        module = vit_like(module, state)
        size = module.grid_size[0] * module.patch_embed.patch_size
    load_backbone_state_dict(module, state)
    return module, dim, size
