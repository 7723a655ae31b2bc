"""Cached, resumable stages of a study, and its one progress display.

A stage is a named computation with declared inputs (JSON-able values and the fingerprints of the stages it reads). Its
fingerprint is the hash of those inputs; ``STUDY/stages/<name>.json`` records it with the stage's status and its result:

- ``done`` with the same fingerprint: the stage is skipped and its saved result returned;
- ``running`` with the same fingerprint (a killed study): the stage runs again in
  its own folder, and the training stages there continue from their checkpoints;
- absent, or another fingerprint (the inputs changed): the stage's folder is cleared and it runs from scratch.

The inputs include a hash of the code the stage runs (:func:`code_fingerprint`), so an upgraded or edited viclab
recomputes a stage instead of reusing a stale result, and, where they change its numbers, the device type and precision
it computes in (``Runtime.key``), so a study folder moved to another machine recomputes those stages.
"""

from __future__ import annotations

import ast
import contextlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.util import resolve_name
from pathlib import Path
from typing import Any

import viclab
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.hashing import digest
from viclab.core.io import atomic_write_text
from viclab.core.runtime import broadcast_object, is_main, local_process

STATE_DIR = "stages"
_PACKAGE_ROOT = Path(viclab.__file__).resolve().parent


def _module_file(name: str, root: Path = _PACKAGE_ROOT) -> Path | None:
    """The source file of module ``name`` (``viclab.x.y``) inside the package, if it is one."""
    base = root.joinpath(*name.split(".")[1:])
    return next((c for c in (base.with_suffix(".py"), base / "__init__.py") if c.is_file()), None)


def _imported(tree: ast.AST, module: str, is_package: bool, package: str) -> Iterable[str]:
    """Names of the ``package`` modules that a module's code imports, at any depth of it."""
    here = module if is_package else module.rpartition(".")[0]  # what its relative imports start from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_name("." * node.level + (node.module or ""), here) if node.level else node.module or ""
            names = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        yield from (n for n in names if n == package or n.startswith(package + "."))


def code_modules(entries: Iterable[str], package: str = "viclab", root: Path = _PACKAGE_ROOT) -> dict[str, Path]:
    """Every module of ``package`` that the ``entries`` can run: the transitive closure of their
    imports (module-level and inside functions) and of the packages they live in."""
    found: dict[str, Path] = {}
    todo = list(entries)
    while todo:
        name = todo.pop()
        if name in found or (path := _module_file(name, root)) is None:  # None: an attribute (from m import f)
            continue
        found[name] = path
        todo += [".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)]  # parent packages
        todo += _imported(ast.parse(path.read_bytes()), name, path.name == "__init__.py", package)
    return found


def code_fingerprint(entries: Iterable[str], own: Iterable[str] = (), package: str = "viclab",
                     root: Path = _PACKAGE_ROOT) -> str:
    """SHA-256 of the source of every module the ``entries`` can run (:func:`code_modules`), of the
    ``own`` modules' files alone (their imports not followed), and of the package version."""
    files = code_modules(entries, package, root)
    files.update({name: path for name in own if (path := _module_file(name, root)) is not None})
    return digest([getattr(viclab, "__version__", ""),
                   *(name.encode() + b"\0" + files[name].read_bytes() + b"\0" for name in sorted(files))])


def fingerprint(inputs: Any) -> str:
    """SHA-256 of ``inputs`` as canonical JSON (sorted keys)."""
    return digest([json.dumps(inputs, sort_keys=True, default=str)])


@dataclass(frozen=True)
class Stage:
    """One step of a study.

    Attributes:
        name: key in ``results.json`` and the state file's name.
        title: what the progress display shows.
        inputs: everything the result depends on (configs without data paths, the hashes of the data it reads, the hash
            of its code); upstream stages' fingerprints are added by the runner.
        run: ``(folder) -> result`` (a JSON-able dict); called with the stage's folder.
        folder: the stage's output folder, relative to the study folder.
        after: names of the stages whose results this one reads.
        collective: under torchrun every process runs it together (training); any other stage runs on rank 0 alone.
        estimate: its expected seconds on the reference machine (the remaining-time estimate of the progress line
            scales these by how fast this machine ran the stages it computed so far).
    """

    name: str
    title: str
    inputs: dict[str, Any]
    run: Callable[[Path], dict[str, Any]]
    folder: str
    after: tuple[str, ...] = ()
    collective: bool = False
    estimate: float = 1.0


@dataclass
class StageRecord:
    """What a finished (or skipped) stage left: its result and how long it took."""

    result: dict[str, Any]
    seconds: float
    cached: bool
    fingerprint: str


def run_stages(study_dir: Path, stages: list[Stage], ctx: Context = DEFAULT_CONTEXT) -> dict[str, StageRecord]:
    """Run ``stages`` in order, skipping those already done with the same inputs.

    Under torchrun, rank 0 keeps the stage records and runs every stage; the other ranks
    join it only in the collective (training) stages it has to run, and return ``{}``.

    Returns:
        ``{stage name: StageRecord}`` (rank 0).
    """
    from tqdm import tqdm

    if not is_main():
        for stage in stages:
            if stage.collective and broadcast_object(None):
                stage.run(study_dir / stage.folder)
        return {}
    state_dir = study_dir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    records: dict[str, StageRecord] = {}
    n, eta = len(stages), Remaining(stages)
    # One bar over the stages; each stage's own bars (epochs, encoding) appear under it and vanish when they finish.
    with tqdm(total=n, disable=not ctx.progress, position=0, leave=True, dynamic_ncols=True,
              bar_format="{desc} |{bar}| {n_fmt}/{total_fmt} stages [{elapsed}]") as bar:
        for k, stage in enumerate(stages, 1):
            upstream = {name: records[name].fingerprint for name in stage.after}
            fp = fingerprint({"stage": stage.name, "inputs": stage.inputs, "upstream": upstream})
            left = eta.left(k - 1)
            bar.set_description_str(f"study: stage {k}/{n} {stage.title} ({left})")
            ctx.echo(f"[{k}/{n}] {stage.title} ({left})")
            state_path = state_dir / f"{stage.name}.json"
            state = _read_state(state_path)
            done = state is not None and state["fingerprint"] == fp and state.get("status") == "done"
            if stage.collective:
                broadcast_object(not done)  # the other ranks train along only if it runs
            if done:
                record = StageRecord(state["result"], state["seconds"], True, fp)
            else:
                with contextlib.nullcontext() if stage.collective else local_process():
                    record = _run_one(study_dir, state_path, state, stage, fp)
            records[stage.name] = record
            if not record.cached:
                eta.ran(stage, record.seconds)
            ctx.echo(f"[{k}/{n}] {stage.title}: {'cached, computed earlier in' if record.cached else 'done in'} "
                     f"{record.seconds:.1f}s")
            bar.update()
    return records


class Remaining:
    """The study's remaining time: the stages' estimates, scaled by this machine's measured speed on the stages
    computed so far (cached stages take no time and say nothing of the speed)."""

    def __init__(self, stages: list[Stage]) -> None:
        self.stages = stages
        self.estimated = self.seconds = 0.0

    def ran(self, stage: Stage, seconds: float) -> None:
        self.estimated += stage.estimate
        self.seconds += seconds

    def left(self, done: int) -> str:
        """``"about 12 min left"`` once ``done`` stages are behind, at most (cached stages make it less)."""
        speed = self.seconds / self.estimated if self.estimated > 0 else 1.0
        seconds = speed * sum(s.estimate for s in self.stages[done:])
        return f"about {int(seconds / 60 + 0.5)} min left" if seconds >= 90 else f"about {seconds:.0f} s left"


def _read_state(state_path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(state_path.read_text()) if state_path.exists() else None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # damaged: the stage is treated as never run
    return state if isinstance(state, dict) and "fingerprint" in state else None


def _run_one(study_dir: Path, state_path: Path, state: dict[str, Any] | None, stage: Stage, fp: str) -> StageRecord:
    folder = study_dir / stage.folder
    if state is None or state["fingerprint"] != fp:
        # New inputs: what the folder holds was computed from others; start afresh.
        shutil.rmtree(folder, ignore_errors=True)
        before = 0.0
    else:  # a killed run: count the time already spent
        before = state.get("seconds", 0.0)
        if since := state.get("started_at"):  # killed without a word (SIGKILL): it worked until its last write
            times = [p.stat().st_mtime for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
            before += max([since, *times]) - since
    started, started_at = time.perf_counter(), time.time()

    def save(status: str, result: dict[str, Any] | None, running: bool = False) -> None:
        atomic_write_text(state_path, json.dumps({
            "stage": stage.name, "fingerprint": fp, "status": status, "inputs": stage.inputs,
            "seconds": before + time.perf_counter() - started, "started_at": started_at if running else None,
            "result": result}, indent=2, default=str) + "\n")

    save("running", None, running=True)
    try:
        result = stage.run(folder)
    except BaseException:
        save("running", None)  # keeps the time spent; the next run continues this stage
        raise
    save("done", result)
    return StageRecord(result, before + time.perf_counter() - started, False, fp)
