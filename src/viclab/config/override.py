"""The one override: a nested mapping (a TOML file, a saved ``config.json``, parsed ``section.field=value``
strings) replaces fields of a frozen config dataclass, walking its nested dataclasses, types coerced; and the
checks every config dataclass runs on itself, each failed one a ``ViclabError`` line."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from viclab.core.errors import ViclabError

_BOOLS = {**dict.fromkeys(("1", "true", "yes", "on"), True), **dict.fromkeys(("0", "false", "no", "off"), False)}


def _to_int(value: Any) -> int:
    if isinstance(value, float) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
        raise ValueError
    return int(value)


# A bool reads back through _BOOLS too: str(True) is "True".
_SCALARS = {bool: lambda v: _BOOLS[str(v).lower()], int: _to_int, float: float, str: str}


def _coerce_tuple(value: Any, args: tuple[Any, ...], key: str) -> tuple[Any, ...]:
    items = (value.split(",") if value.strip() else []) if isinstance(value, str) else list(value)
    if len(args) == 2 and args[1] is Ellipsis:  # tuple[float, ...]: any length (a config checks its own)
        return tuple(_coerce(v, args[0], key) for v in items)
    if len(items) != len(args):
        raise ViclabError(f"{key} needs {len(args)} comma-separated values, got {value!r}")
    return tuple(_coerce(v, a, key) for v, a in zip(items, args))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a TOML or JSON value or a command-line string to the field's declared type."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is tuple:
        return _coerce_tuple(value, args, key)
    if tp not in _SCALARS:
        raise ViclabError(f"{key}: unsupported type {tp}")
    try:
        return _SCALARS[tp](value)
    except (TypeError, ValueError, KeyError):
        raise ViclabError(f"{key}={value!r} is not a valid {getattr(tp, '__name__', tp)}") from None


def _unknown(obj: Any, key: str, origin: str, prefix: str) -> ViclabError:
    names = [f.name for f in dataclasses.fields(obj)]
    if not prefix:  # a training Config: its fields are the sections
        return ViclabError(f"unknown config section {key!r} in {origin}; valid: {', '.join(names)}")
    return ViclabError(f"unknown config key '{prefix}{key}' in {origin}; valid: "
                       + ", ".join(f"{prefix}{k}" for k in names))


def override(obj: Any, mapping: dict[str, Any], origin: str = "the command line", prefix: str = "") -> Any:
    """``obj`` (a frozen config dataclass) with the fields in ``mapping`` replaced, nested tables walked.

    Args:
        obj: the config to start from.
        mapping: field name -> value, or -> a table for a nested dataclass field. A table for a
            training :class:`Config` may name a ``preset`` to start from (a recipe file's name).
        origin: where ``mapping`` came from, for error messages (a file name, "the command line").
        prefix: how ``obj``'s keys are named in messages ("" for a :class:`Config`: its sections).
    """
    if not isinstance(mapping, dict):
        raise ViclabError(f"{origin} holds a {type(mapping).__name__}, not a table of config sections")
    hints = typing.get_type_hints(type(obj))
    if "preset" in mapping and "preset" not in hints:
        from viclab.config.recipes import get_preset  # recipes read this module: import when used

        obj, mapping = get_preset(mapping["preset"]), {k: v for k, v in mapping.items() if k != "preset"}
    changes = {}
    for key, value in mapping.items():
        if key not in hints:
            raise _unknown(obj, key, origin, prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            if not isinstance(value, dict):
                raise ViclabError(f"config section {key!r} in {origin} must be a table of fields")
            # A nested dataclass's keys are named ``key.field``; a training Config's by its own sections.
            changes[key] = override(getattr(obj, key), value, origin, "" if tp.__name__ == "Config" else f"{key}.")
        else:
            changes[key] = _coerce(value, tp, f"{prefix}{key}")
    return dataclasses.replace(obj, **changes)


def parse_overrides(items: typing.Iterable[str | tuple[str, Any]]) -> dict[str, Any]:
    """``["optim.lr=1e-3", ("train.epochs", 2)]`` -> ``{"optim": {"lr": "1e-3"}, "train": {"epochs": 2}}``.

    A string is ``section.field=value`` (value coerced later); a pair is a command-line flag's
    ``(section.field, value)``, its value already typed."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=") if isinstance(item, str) else (item[0], "=", item[1])
        value = value.strip() if isinstance(value, str) else value
        path = key.strip().split(".")
        if not sep or len(path) < 2 or not all(path):
            raise ViclabError(f"cannot read override {item!r}; write section.field=value, e.g. optim.lr=1e-3")
        table = out
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ViclabError(f"cannot read override {item!r}: {key.rsplit('.', 1)[0]} is a field, not a section")
        table[path[-1]] = value
    return out


def merge(base: dict[str, Any], more: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``more``, nested tables merged (later wins)."""
    out = dict(base)
    for key, value in more.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = merge(out[key], value) if both else value
    return out


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file (a recipe or a user's ``--config``) as a nested mapping."""
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ViclabError(f"config file {path} does not exist; check the path") from None
    except UnicodeDecodeError:
        raise ViclabError(f"config file {path} is not UTF-8 text; save it as UTF-8 TOML") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ViclabError(f"cannot read config file {path}: {e}") from None


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def check(ok: bool, message: str) -> None:
    if not ok:
        raise ViclabError(message)


def prob(name: str, p: float) -> None:
    check(0.0 <= p <= 1.0, f"{name}={p} is not a probability; use a value in [0, 1]")


def finite(obj: Any, prefix: str = "") -> None:
    """Every float field (and float in a tuple field) of ``obj`` is a finite number: a NaN
    compares false with every bound, so it would pass the range checks and poison a run."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ViclabError(f"{prefix}{f.name}={v} is not a finite number; give a real value")


def interval(name: str, lo_hi: tuple[float, float], lo: float, hi: float) -> None:
    check(lo <= lo_hi[0] <= lo_hi[1] <= hi, f"{name}={lo_hi} must satisfy {lo} <= min <= max <= {hi}")


def known(obj: Any, prefix: str, name: str, choices: typing.Collection[str], use: str = "") -> None:
    """Field ``name`` is one of ``choices``, else ``{prefix}{name}={value!r} is unknown; use {use or choices}``."""
    value = getattr(obj, name)
    check(value in choices, f"{prefix}{name}={value!r} is unknown; use {use or ', '.join(choices)}")


def at_least(obj: Any, prefix: str, bound: float, *names: str) -> None:
    """Each field of ``names`` is >= ``bound``, else ``{prefix}{name}={value} must be >= {bound}``."""
    for name in names:
        check(getattr(obj, name) >= bound, f"{prefix}{name}={getattr(obj, name)} must be >= {bound}")
