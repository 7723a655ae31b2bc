"""The run folder: resolved config, provenance, metrics, checkpoints, weights.

Layout::

    RUN/config.json       resolved Config
    RUN/meta.json         git commit, library versions, device, command line
    RUN/metrics.jsonl     one record per training batch and per test evaluation
    RUN/tb/               TensorBoard events
    RUN/checkpoint.pt     last completed epoch (atomic)
    RUN/encoder.safetensors  final encoder weights, config in the metadata
"""

from __future__ import annotations

import dataclasses
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

import viclab
from viclab.config import Config
from viclab.errors import ViclabError
from viclab.io import atomic_write, atomic_write_text

CONFIG, META, METRICS, CHECKPOINT, ENCODER = (
    "config.json", "meta.json", "metrics.jsonl", "checkpoint.pt", "encoder.safetensors")


def git_commit() -> str:
    """The viclab source tree's commit (``+dirty`` if modified), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def library_versions() -> dict[str, str]:
    """Python and the installed versions of viclab's dependencies."""
    from importlib import metadata

    versions = {"python": platform.python_version(), "viclab": viclab.__version__, "torch": torch.__version__}
    for dist in ("numpy", "scipy", "scikit-learn", "faiss-cpu", "safetensors", "tensorboard", "pillow"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def config_json(cfg: Any) -> str:
    """A config dataclass (:class:`Config`, or an ablation's) as sorted, indented JSON."""
    return json.dumps(dataclasses.asdict(cfg), indent=2, sort_keys=True)


def write_run_files(run_dir: Path, cfg: Any, device: torch.device | str, resumed: bool = False) -> None:
    """Write ``config.json`` (any config dataclass) and ``meta.json`` (atomically).

    A resumed run keeps the original provenance and appends this session's to
    ``meta["resumes"]``.
    """
    device = torch.device(device)
    session = {
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    meta_path = run_dir / META
    if resumed and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta.setdefault("resumes", []).append(session)
    else:
        meta = session
        atomic_write_text(run_dir / CONFIG, config_json(cfg) + "\n")
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


def read_config(run_dir: Path) -> Config:
    """The resolved config a run folder was trained with."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ViclabError(f"{run_dir} is not a viclab run folder (no {CONFIG}); check the path")
    try:
        return Config.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ViclabError(f"cannot read {path} ({e}); the run folder is damaged") from None


class MetricsLog:
    """Append-only JSONL of metric records, flushed per write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "a", encoding="utf-8")

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        self._f.writelines(json.dumps(r) + "\n" for r in records)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def truncate_metrics(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop records a resumed run will write again (those after the checkpoint)."""
    kept = [r for r in read_metrics(path) if keep(r)]
    atomic_write(path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in kept)))
