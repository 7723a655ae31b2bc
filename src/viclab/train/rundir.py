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
from viclab.io import atomic_write, atomic_write_text, remove_stale_temp
from viclab.runtime import Runtime

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


# What a run folder holds, by the type of its config (recorded in meta.json as "kind").
KINDS = {"Config": "train", "LatentConfig": "latent", "EigenmapsConfig": "eigenmaps", "StudyConfig": "study"}
_CONTINUE = {
    "latent": "a latent-optimisation run: continue it with 'viclab ablate latent --out PARENT --name NAME' and "
              "its options",
    "eigenmaps": "a Laplacian Eigenmaps run: rerun 'viclab ablate laplacian --out PARENT --name NAME' with its "
                 "options",
    "study": "a study folder: continue it with 'viclab study --out FOLDER' and its options",
}


def write_run_files(run_dir: Path, cfg: Any, runtime: Runtime | torch.device | str, resumed: bool = False) -> None:
    """Create the run folder and write ``config.json`` (any config dataclass), then ``meta.json``.

    ``config.json`` is the first file a new run writes (atomically), so a folder killed at
    any later moment is one that a resumed run accepts. A resumed run keeps its config and
    original provenance and appends this session's to ``meta["resumes"]``; the temporary
    files a killed writer left in the folder are removed.
    """
    rt = runtime if isinstance(runtime, Runtime) else None
    device = rt.device if rt else torch.device(runtime)
    session = {
        "kind": KINDS.get(type(cfg).__name__, type(cfg).__name__),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "command": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if rt is not None:
        session["precision"] = {"name": rt.precision, "why": rt.reason}
    meta_path = run_dir / META
    if resumed and (run_dir / CONFIG).exists():
        remove_stale_temp(run_dir)
        try:
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else dict(session)
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            meta = dict(session, note="the earlier meta.json was unreadable and was replaced")
        meta.setdefault("resumes", []).append(session)
    else:
        meta = session
        atomic_write_text(run_dir / CONFIG, config_json(cfg) + "\n")
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


def run_kind(run_dir: Path, config: dict[str, Any] | None = None) -> str:
    """``train``, ``latent``, ``eigenmaps`` or ``study``: from meta.json, else from the config's keys."""
    try:
        kind = json.loads((Path(run_dir) / META).read_text()).get("kind")
        if kind:
            return kind
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        pass
    keys = set(config or {})
    return "latent" if "pairs" in keys else "eigenmaps" if "solver" in keys else "study" if "recipe" in keys \
        else "train"


def read_config(run_dir: Path) -> Config:
    """The resolved config a training run folder was trained with.

    Raises:
        ViclabError: the folder is not a run folder, its config is damaged, or it holds
            another kind of run (latent optimisation, Laplacian Eigenmaps, a study).
    """
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ViclabError(f"{run_dir} is not a viclab run folder (no {CONFIG}); check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ViclabError(f"cannot read {path} ({e}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise ViclabError(f"{path} holds a {type(data).__name__}, not a config; the run folder is damaged")
    kind = run_kind(run_dir, data)
    if kind != "train":
        raise ViclabError(f"{run_dir} is {_CONTINUE.get(kind, 'not a training run')}")
    return Config.from_dict(data, origin=str(path))


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
    """The records of ``metrics.jsonl``. A half-written last line (what a killed process leaves)
    is dropped; a damaged line elsewhere is an error."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    records = []
    for i, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise ViclabError(f"{path} line {i + 1} is damaged; restore the file or start a new run") from None
    return records


def truncate_metrics(path: Path, keep: Callable[[dict[str, Any]], bool]) -> None:
    """Drop records a resumed run will write again (those after the checkpoint)."""
    kept = [r for r in read_metrics(path) if keep(r)]
    atomic_write(path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in kept)))
