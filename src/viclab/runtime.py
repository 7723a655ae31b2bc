"""Device, precision and process-group facts, decided in one place.

Everything runs single-process; the distributed helpers answer rank 0 / world 1
when no process group is initialised, so callers never branch on it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.distributed as dist

from viclab.errors import ViclabError


@dataclass(frozen=True)
class Runtime:
    """Where tensors live and which dtype autocast computes in."""

    device: torch.device
    autocast_dtype: torch.dtype | None  # None: full fp32

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)


def select_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """Resolve ``train.device`` / ``train.precision`` to a :class:`Runtime`.

    ``auto`` picks CUDA when present; precision ``auto`` is bf16 autocast on CUDA
    and fp32 on CPU (bf16 matmuls are slow on most CPUs).
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ViclabError(f"train.device={device!r} is not a device; use auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ViclabError("train.device=cuda but no CUDA GPU is visible; use train.device=cpu")
    if dev.type not in ("cpu", "cuda"):
        raise ViclabError(f"train.device={device!r} is unsupported; use auto, cpu or cuda[:N]")
    if precision == "auto":
        precision = "bf16" if dev.type == "cuda" else "fp32"
    dtype = torch.bfloat16 if precision == "bf16" else None
    return Runtime(device=dev, autocast_dtype=dtype)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1
