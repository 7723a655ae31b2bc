"""Cached, resumable stages of a study, and its one progress display.

A stage is a named computation with declared inputs (JSON-able values and the
fingerprints of the stages it reads). Its fingerprint is the hash of those inputs;
``STUDY/stages/<name>.json`` records it with the stage's status and its result:

- ``done`` with the same fingerprint: the stage is skipped and its saved result returned;
- ``running`` with the same fingerprint (a killed study): the stage runs again in
  its own folder, and the training stages there continue from their checkpoints;
- absent, or another fingerprint (the inputs changed): the stage's folder is
  cleared and it runs from scratch.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from viclab.io import atomic_write_text

STATE_DIR = "stages"


def fingerprint(inputs: Any) -> str:
    """SHA-256 of ``inputs`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Stage:
    """One step of a study.

    Attributes:
        name: key in ``results.json`` and the state file's name.
        title: what the progress display shows.
        inputs: everything the result depends on (configs without data paths,
            the data's hash); upstream stages' fingerprints are added by the runner.
        run: ``(folder) -> result`` (a JSON-able dict); called with the stage's folder.
        folder: the stage's output folder, relative to the study folder.
        after: names of the stages whose results this one reads.
    """

    name: str
    title: str
    inputs: dict[str, Any]
    run: Callable[[Path], dict[str, Any]]
    folder: str
    after: tuple[str, ...] = ()


@dataclass
class StageRecord:
    """What a finished (or skipped) stage left: its result and how long it took."""

    result: dict[str, Any]
    seconds: float
    cached: bool
    fingerprint: str = field(repr=False, default="")


class Progress:
    """One overall display: a bar over the stages (``stage k/n: title``); each stage's own
    bars (epochs, encoding) appear under it and vanish when they finish."""

    def __init__(self, total: int, enabled: bool, echo: Callable[[str], None]) -> None:
        from tqdm import tqdm

        self.total, self.echo = total, echo
        self.bar = tqdm(total=total, disable=not enabled, position=0, leave=True, dynamic_ncols=True,
                        bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} stages [{elapsed}]")

    def start(self, k: int, title: str) -> None:
        self.bar.set_description_str(f"study: stage {k}/{self.total} {title}")
        self.echo(f"[{k}/{self.total}] {title}")

    def finish(self, k: int, title: str, record: StageRecord) -> None:
        how = "cached, computed earlier in" if record.cached else "done in"
        self.echo(f"[{k}/{self.total}] {title}: {how} {record.seconds:.1f}s")
        self.bar.update()

    def close(self) -> None:
        self.bar.close()


def run_stages(study_dir: Path, stages: list[Stage], progress: bool = True,
               echo: Callable[[str], None] = print) -> dict[str, StageRecord]:
    """Run ``stages`` in order, skipping those already done with the same inputs.

    Returns:
        ``{stage name: StageRecord}``.
    """
    state_dir = study_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(stages), progress, echo)
    records: dict[str, StageRecord] = {}
    try:
        for k, stage in enumerate(stages, 1):
            upstream = {name: records[name].fingerprint for name in stage.after}
            fp = fingerprint({"stage": stage.name, "inputs": stage.inputs, "upstream": upstream})
            bar.start(k, stage.title)
            records[stage.name] = _run_one(study_dir, state_dir / f"{stage.name}.json", stage, fp)
            bar.finish(k, stage.title, records[stage.name])
    finally:
        bar.close()
    return records


def _run_one(study_dir: Path, state_path: Path, stage: Stage, fp: str) -> StageRecord:
    state = json.loads(state_path.read_text()) if state_path.exists() else None
    folder = study_dir / stage.folder
    if state is not None and state["fingerprint"] == fp and state["status"] == "done":
        return StageRecord(state["result"], state["seconds"], True, fp)
    if state is None or state["fingerprint"] != fp:
        # New inputs: what the folder holds was computed from others; start afresh.
        shutil.rmtree(folder, ignore_errors=True)
        before = 0.0
    else:
        before = state.get("seconds", 0.0)  # a killed run: count the time already spent
    started = time.perf_counter()

    def save(status: str, result: dict[str, Any] | None) -> None:
        atomic_write_text(state_path, json.dumps({
            "stage": stage.name, "fingerprint": fp, "status": status, "inputs": stage.inputs,
            "seconds": before + time.perf_counter() - started, "result": result}, indent=2, default=str) + "\n")

    save("running", None)
    try:
        result = stage.run(folder)
    except BaseException:
        save("running", None)  # keeps the time spent; the next run continues this stage
        raise
    save("done", result)
    return StageRecord(result, before + time.perf_counter() - started, False, fp)
