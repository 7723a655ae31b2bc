"""Run folders of the encoder-free ablations: same layout and promises as a training run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from viclab.errors import ViclabError
from viclab.io import atomic_write_text, check_writable_dir, remove_stale_temp
from viclab.train import rundir


def begin_run(run_dir: Path, cfg: Any, product: str, summary: str, resumable: bool = False,
              device: str = "cpu") -> dict[str, Any] | None:
    """Validate ``run_dir`` for ``cfg``; return the saved summary if the run already finished.

    A new folder gets ``config.json`` and ``meta.json``. A folder holding a run of the
    same config is finished (its summary is returned) or continued; one holding a
    different config is an error, so results are never overwritten.
    """
    check_writable_dir(run_dir, "run folder")
    config_path = run_dir / rundir.CONFIG
    if config_path.exists():
        try:
            saved = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ViclabError(f"cannot read {config_path} ({e}); the run folder is damaged, choose another --name") \
                from None
        if not isinstance(saved, dict):
            raise ViclabError(f"{config_path} holds a {type(saved).__name__}, not a config; choose another --name")
        wanted = json.loads(rundir.config_json(cfg))
        diffs = [f"{k}: run has {saved.get(k)!r}, asked {v!r}" for k, v in wanted.items()
                 if saved.get(k) != v and k != "data_dir"]
        remove_stale_temp(run_dir)
        started = any((run_dir / f).exists() for f in (product, summary, rundir.CHECKPOINT, rundir.METRICS))
        if diffs and not started:  # a run that failed before computing anything: nothing to lose
            rundir.write_run_files(run_dir, cfg, device)
            return None
        if diffs:
            raise ViclabError(f"{run_dir} holds a run with another config ({'; '.join(diffs)}); "
                              "choose another --name")
        if (run_dir / product).exists() and (run_dir / summary).exists():
            return json.loads((run_dir / summary).read_text())
        rundir.write_run_files(run_dir, cfg, device, resumed=resumable)
        return None
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ViclabError(f"{run_dir} already exists and is not a run of this kind; choose another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    rundir.write_run_files(run_dir, cfg, device)
    return None


def finish_run(run_dir: Path, summary: str, payload: dict[str, Any]) -> None:
    """Write the summary last: its presence marks the run as finished."""
    atomic_write_text(run_dir / summary, json.dumps(payload, indent=2) + "\n")
