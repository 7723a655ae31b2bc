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

import contextlib
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
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write, atomic_write_text, check_writable_dir, remove_stale_temp
from viclab.core.runtime import Runtime, barrier, get_world_size, is_main

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
KINDS = {"Config": "train", "LatentConfig": "latent", "EigenmapsConfig": "eigenmaps", "StudyConfig": "study",
         "DetectConfig": "detector", "AutoencoderConfig": "autoencoder", "DcaseConfig": "dcase"}
_CONTINUE = {
    "latent": "a latent-optimisation run: continue it with 'viclab ablate latent --out PARENT --name NAME' and "
              "its options",
    "eigenmaps": "a Laplacian Eigenmaps run: rerun 'viclab ablate laplacian --out PARENT --name NAME' with its "
                 "options",
    "study": "a study folder: continue it with 'viclab study --out FOLDER' and its options",
}


def write_run_files(run_dir: Path, cfg: Any, runtime: Runtime | torch.device | str, resumed: bool = False) -> None:
    """Rank 0 creates the run folder and writes ``config.json`` (any config dataclass, atomically: a folder
    killed at any later moment is one a resumed run accepts), then ``meta.json``. A resumed run keeps both,
    appends this session's provenance to ``meta["resumes"]`` and removes a killed writer's temporary files."""
    if not is_main():
        return
    rt = runtime if isinstance(runtime, Runtime) else None
    device = rt.device if rt else torch.device(runtime)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    session = {"kind": KINDS.get(type(cfg).__name__, type(cfg).__name__), "git_commit": git_commit(),
               "versions": library_versions(), "device": str(device), "device_name": name, "command": sys.argv,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "world_size": get_world_size()}
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
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG, config_json(cfg) + "\n")
    atomic_write_text(meta_path, json.dumps(meta, indent=2) + "\n")


def run_kind(run_dir: Path, config: dict[str, Any] | None = None) -> str:
    """``train``, ``latent``, ``eigenmaps`` or ``study``: from meta.json, else from the config's keys."""
    with contextlib.suppress(OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        kind = json.loads((Path(run_dir) / META).read_text()).get("kind")
        if kind:
            return kind
    keys = set(config or {})
    return "latent" if "pairs" in keys else "eigenmaps" if "solver" in keys else "study" if "recipe" in keys \
        else "train"


def _read_json_config(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ViclabError(f"{run_dir} is not a viclab run folder (no {CONFIG}); check the path")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ViclabError(f"cannot read {path} ({e}); the run folder is damaged") from None
    if not isinstance(data, dict):
        raise ViclabError(f"{path} holds a {type(data).__name__}, not a config; the run folder is damaged")
    return data


def read_config(run_dir: Path) -> Config:
    """The resolved config a training run folder was trained with.

    Raises:
        ViclabError: not a run folder, a damaged config, or another kind of run (latent, eigenmaps, study).
    """
    data = _read_json_config(run_dir)
    kind = run_kind(run_dir, data)
    if kind != "train":
        raise ViclabError(f"{run_dir} is {_CONTINUE.get(kind, 'not a training run')}")
    return Config.from_dict(data, origin=str(Path(run_dir) / CONFIG))


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_diff(saved: dict[str, Any], wanted: Any) -> list[str]:
    """What differs between a saved config dict and a config dataclass, ignoring where the data
    lives (``data_dir``: it does not change the numbers), as ``key: run has X, asked Y``."""
    a, b = _flat(saved), _flat(json.loads(config_json(wanted)))
    return [f"{k}: run has {a.get(k)!r}, asked {b.get(k)!r}" for k in sorted(a.keys() | b.keys())
            if a.get(k) != b.get(k) and not k.endswith("data_dir")]


@dataclasses.dataclass(frozen=True)
class FolderState:
    """What an existing folder holds (:meth:`RunFolder.inspect`)."""

    foreign: bool  # files but no config.json: not a run folder, never written into
    configured: bool  # a config.json: a run was begun there
    started: bool  # something was computed there (a checkpoint, metrics, or a result)
    finished: bool  # every file that marks the run done is there


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """A run folder and its protocol, for every training and ablation: :meth:`open` validates and writes nothing;
    :meth:`begin`, after every check of the caller's inputs, writes ``config.json`` and ``meta.json``.

    Attributes:
        path: the folder.
        config: the config to run (a resumed run's saved one, with this call's data location).
        resumed: the folder already held this run (continue from its checkpoint, if any).
        finished: the run's summary when it already finished (``auto`` runs with a summary file).
    """

    path: Path
    config: Any
    resumed: bool
    finished: dict[str, Any] | None = None

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @classmethod
    def open(cls, path: str | Path, cfg: Any, mode: str = "new", done: tuple[str, ...] = ()) -> RunFolder:
        """Validate the run folder ``path`` for a run of ``cfg`` (``None`` with ``resume``: the saved one).

        Args:
            mode: ``new`` (an absent or empty folder), ``resume`` (the folder holds this run: a different config,
                other than the data location, is an error) or ``auto`` (ablations and study stages: continue a run
                of the same config, replace one of another config that never computed anything, refuse to
                overwrite one that did).
            done: the files whose presence marks an ``auto`` run finished, the summary JSON last.
        """
        path = Path(path)
        if mode == "resume":
            saved = read_config(path)
            if cfg is not None:
                diffs = config_diff(json.loads(config_json(saved)), cfg)
                if diffs:
                    raise ViclabError(f"cannot resume {path} with a different config ({'; '.join(diffs)}); "
                                      "drop those options or start a new run")
                return cls(path, dataclasses.replace(saved, data=cfg.data), True)
            return cls(path, saved, True)
        if cfg is None:
            raise ValueError("a new run needs a config")
        check_writable_dir(path, "run folder")
        if mode == "new":
            if path.exists() and any(path.iterdir()):
                raise ViclabError(f"run folder {path} already exists; continue it with --resume {path} "
                                  "or choose another --name")
            return cls(path, cfg, False)
        if mode != "auto":
            raise ValueError(f"mode must be one of ('new', 'resume', 'auto'), got {mode!r}")
        state = cls.inspect(path, (*done, CHECKPOINT, METRICS), done)
        if state.foreign:
            raise ViclabError(f"{path} already exists and is not a run of this kind; choose another --name")
        if not state.configured:
            return cls(path, cfg, False)
        diffs = config_diff(_read_json_config(path), cfg)
        if diffs and state.started:
            raise ViclabError(f"{path} holds a run with another config ({'; '.join(diffs)}); choose another --name")
        if diffs:  # a run that failed before computing anything: nothing to lose
            return cls(path, cfg, False)
        if state.finished:
            return cls(path, cfg, True, json.loads((path / done[-1]).read_text()))
        return cls(path, cfg, True)

    @staticmethod
    def inspect(path: Path, started: Iterable[str], done: tuple[str, ...]) -> FolderState:
        """What ``path`` holds, by the files present (``started``, ``done``: paths inside it): the rule of every
        ``auto`` folder (ablations, study stages, detector folders)."""
        path = Path(path)
        if not (path / CONFIG).exists():
            return FolderState(path.exists() and any(path.iterdir()), False, False, False)
        return FolderState(False, True, any((path / f).exists() for f in started),
                           bool(done) and all((path / f).exists() for f in done))

    def begin(self, runtime: Runtime | torch.device | str) -> None:
        """Write ``config.json`` (a new run) and ``meta.json`` (rank 0); then every rank proceeds."""
        barrier()  # every rank has validated the folder before rank 0 writes into it
        write_run_files(self.path, self.config, runtime, resumed=self.resumed)  # rank 0 only
        barrier()

    def finish(self, summary: str, payload: dict[str, Any]) -> None:
        """Write the summary last (rank 0): its presence marks the run as finished."""
        if is_main():
            atomic_write_text(self.path / summary, json.dumps(payload, indent=2) + "\n")


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
    """The records of ``metrics.jsonl``; a half-written last line is dropped, a damaged line elsewhere raises."""
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
