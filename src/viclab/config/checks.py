"""Validation helpers shared by the config dataclasses: each failed check is one ``ViclabError`` line."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from viclab.core.errors import ViclabError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ViclabError(message)


def prob(name: str, p: float) -> None:
    check(0.0 <= p <= 1.0, f"{name}={p} is not a probability; use a value in [0, 1]")


def finite(obj: Any, prefix: str = "") -> None:
    """Every float field (and float in a tuple field) of ``obj`` is a finite number: a NaN
    compares false with every bound, so it would pass the range checks and poison a run."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ViclabError(f"{prefix}{f.name}={v} is not a finite number; give a real value")


def interval(name: str, lo_hi: tuple[float, float], lo: float, hi: float) -> None:
    a, b = lo_hi
    check(lo <= a <= b <= hi, f"{name}={lo_hi} must satisfy {lo} <= min <= max <= {hi}")
