"""Projector MLP h built from a width spec such as ``"512-512-512"``."""

from __future__ import annotations

from torch import nn

from viclab.core.errors import ViclabError
from viclab.core.runtime import check_fits


def build_projector(in_dim: int, spec: str) -> tuple[nn.Module, int]:
    """``Linear -> BN -> ReLU`` for every width but the last, then a plain ``Linear``.

    Args:
        in_dim: representation width (the backbone's ``feature_dim``).
        spec: dash-separated widths, e.g. ``"512-512-512"`` (spec §2's projector).

    Returns:
        ``(module, out_dim)``; the module maps ``(B, in_dim) -> (B, out_dim)``.
    """
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
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 1:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers), widths[-1]
