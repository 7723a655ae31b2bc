"""Projector MLP h built from a width spec such as ``"512-512-512"``."""

from __future__ import annotations

from torch import nn

from viclab.core.errors import ViclabError
from viclab.core.runtime import check_fits


def dense_layers(widths: list[int]) -> list[nn.Module]:
    """``Linear -> BatchNorm1d -> ReLU`` from each width to the next."""
    return [m for cin, cout in zip(widths[:-1], widths[1:])
            for m in (nn.Linear(cin, cout), nn.BatchNorm1d(cout), nn.ReLU(inplace=True))]


def build_projector(in_dim: int, spec: str) -> tuple[nn.Module, int]:
    """``(module, out_dim)``: :func:`dense_layers` to every width of ``spec`` (dash-separated, e.g. spec §2's
    ``"512-512-512"``) but the last, then a plain ``Linear``; ``(B, in_dim) -> (B, out_dim)``."""
    try:
        widths = [int(w) for w in spec.split("-")]
    except ValueError:
        widths = []
    if not widths or min(widths) < 1:
        raise ViclabError(f"model.projector={spec!r} is not a width list; write e.g. 512-512-512")
    dims = [in_dim, *widths]
    # Refuse before allocating: an absurd width would fail deep in torch (or wake the OOM killer).
    params = sum(a * b + 3 * b for a, b in zip(dims[:-1], dims[1:]))
    check_fits(4 * params, "cpu", f"model.projector={spec} ({params / 1e6:.0f} M parameters on {in_dim}-d features)",
               "use narrower widths, e.g. model.projector=2048-2048")
    return nn.Sequential(*dense_layers(dims[:-1]), nn.Linear(dims[-2], dims[-1])), widths[-1]
