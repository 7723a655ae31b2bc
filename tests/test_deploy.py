"""The cluster files under deploy/: shellcheck, and the Slurm script run by bash with stub srun/scontrol.

The stubs stand in for Slurm on one machine: ``srun`` drops its options and runs the command,
``scontrol show hostnames`` prints ``$STUB_HOSTS``, ``scontrol requeue`` is recorded. The two-process
training test then runs the real torchrun on the CPU (gloo); the other tests use a stub torchrun
that records its arguments.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
SBATCH = DEPLOY / "slurm" / "train.sbatch"
BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

SRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_LOG/srun.args"
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
exec "$@"
"""
SCONTROL = """#!/bin/bash
case "$1" in
    show) printf '%s\\n' ${STUB_HOSTS:-localhost} ;;
    requeue) echo "requeue $2" >> "$STUB_LOG/requeue" ;;
    *) echo "stub scontrol: unexpected $*" >&2; exit 1 ;;
esac
"""
# Drops 'exec', its options and the image, then runs the rest (as the container would).
APPTAINER = """#!/bin/bash
shift
while [[ $# -gt 0 && $1 == -* ]]; do shift; done
shift
exec "$@"
"""
# Records its arguments (atomically: the file is the test's "started" marker), then sleeps or exits.
TORCHRUN = """#!/bin/bash
printf '%s\\n' "$@" > "$STUB_LOG/torchrun.args.tmp"
mv "$STUB_LOG/torchrun.args.tmp" "$STUB_LOG/torchrun.args"
if [[ -n ${STUB_SLEEP:-} ]]; then exec sleep "$STUB_SLEEP"; fi
exit "${STUB_STATUS:-0}"
"""

TINY = ["train.device=cpu", "data.dataset=folder", "train.epochs=1", "train.batch_size=8",
        "model.backbone=small_cnn", "model.projector=32-32", "augment.size=16", "augment.blur_kernel=3",
        "train.eval_test=false", "train.min_steps=0"]  # one exact epoch


def _venv_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def _slurm_env(tmp_path: Path, torchrun: str, port: int, **extra: str) -> dict[str, str]:
    """A clean environment of a one-node job 4242 with 2 processes per node and the stubs first on PATH."""
    bin_dir, log_dir = tmp_path / "bin", tmp_path / "stub-log"
    bin_dir.mkdir(exist_ok=True)
    log_dir.mkdir(exist_ok=True)
    _write(bin_dir / "srun", SRUN)
    _write(bin_dir / "scontrol", SCONTROL)
    _write(bin_dir / "apptainer", APPTAINER)
    drop = ("SLURM_", "VICLAB_", "GPUS_PER_NODE", "MASTER_", "TORCHRUN", "PYTHON", "APPTAINER", "STUB_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update({
        "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "STUB_LOG": str(log_dir),
        "SLURM_JOB_ID": "4242", "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "localhost", "SLURM_NODEID": "0",
        "GPUS_PER_NODE": "2", "MASTER_PORT": str(port), "TORCHRUN": torchrun,
        "VICLAB_RUNS": str(tmp_path / "runs"), "VICLAB_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
    })
    env.update(extra)
    return env


def _run_script(env: dict[str, str], cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([BASH, str(SBATCH), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _args(env: dict[str, str], tool: str) -> list[str]:
    return (Path(env["STUB_LOG"]) / f"{tool}.args").read_text().splitlines()


def _launch(port: int, nnodes: int, head: str, where: list[str], user: list[str]) -> list[str]:
    """What the script should pass to torchrun."""
    return ["--nnodes", str(nnodes), "--nproc_per_node", "2", "--rdzv_id", "4242", "--rdzv_backend", "c10d",
            "--rdzv_endpoint", f"{head}:{port}", "-m", "viclab", "train", *where, "--no-progress", *user]


def _image_folder(root: Path, n_train: int = 48, n_test: int = 12, classes: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            folder = root / split / f"c{i % classes}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_shellcheck_passes_on_deploy():
    shellcheck = _venv_tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (neither beside the Python executable nor on PATH)")
    scripts = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".sh", ".sbatch"))
    assert SBATCH in scripts
    r = subprocess.run([shellcheck, "-x", *map(str, scripts)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@needs_bash
def test_launch_line_new_run_then_resume(tmp_path):
    port = _free_port()
    torchrun = str(_write(tmp_path / "torchrun-stub", TORCHRUN))
    env = _slurm_env(tmp_path, torchrun, port)
    runs, user = str(tmp_path / "runs"), ["--preset", "cpu", "train.epochs=2"]

    r = _run_script(env, tmp_path, *user)
    assert r.returncode == 0, r.stdout + r.stderr
    srun = _args(env, "srun")
    assert srun[:4] == ["--kill-on-bad-exit=1", "--nodes=1", "--ntasks=1", "--ntasks-per-node=1"]
    assert srun[srun.index(torchrun):] == [torchrun, *_args(env, "torchrun")]
    assert _args(env, "torchrun") == _launch(port, 1, "localhost",
                                             ["--out", runs, "--name", "slurm-4242"], user)

    # A requeued job (same id) finds the run's config.json and resumes it with the same arguments.
    run = tmp_path / "runs" / "slurm-4242"
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    r = _run_script(env, tmp_path, *user)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _args(env, "torchrun") == _launch(port, 1, "localhost", ["--resume", str(run)], user)


@needs_bash
def test_launch_line_two_nodes_in_a_container_and_exit_status(tmp_path):
    port = _free_port()
    torchrun = str(_write(tmp_path / "torchrun-stub", TORCHRUN))
    env = _slurm_env(tmp_path, torchrun, port, SLURM_NNODES="2", STUB_HOSTS="gpu17 gpu18",
                     SLURM_JOB_NODELIST="gpu[17-18]", SLURM_CPUS_PER_TASK="8", VICLAB_SIF="/images/viclab.sif",
                     VICLAB_RUN_NAME="big", STUB_STATUS="3")
    env.pop("OMP_NUM_THREADS")
    r = _run_script(env, tmp_path, "train.epochs=1")
    assert r.returncode == 3, r.stdout + r.stderr  # the training's status
    srun = _args(env, "srun")
    assert srun[:5] == ["--kill-on-bad-exit=1", "--nodes=2", "--ntasks=2", "--ntasks-per-node=1",
                        "--cpus-per-task=8"]
    assert srun[5:9] == ["apptainer", "exec", "--nv", "/images/viclab.sif"]
    assert srun[9] == torchrun
    assert _args(env, "torchrun") == _launch(port, 2, "gpu17",
                                             ["--out", str(tmp_path / "runs"), "--name", "big"], ["train.epochs=1"])


@needs_bash
def test_requeue_trap_requeues_on_usr1(tmp_path):
    torchrun = str(_write(tmp_path / "torchrun-stub", TORCHRUN))
    env = _slurm_env(tmp_path, torchrun, _free_port(), STUB_SLEEP="60")
    started = Path(env["STUB_LOG"]) / "torchrun.args"
    out = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen([BASH, str(SBATCH), "train.epochs=1"], env=env, cwd=tmp_path, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not started.exists():
            assert proc.poll() is None, (tmp_path / "out.txt").read_text()
            assert time.monotonic() < deadline, "the stub torchrun never started"
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGUSR1)
        status = proc.wait(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    log = (tmp_path / "out.txt").read_text()
    assert (Path(env["STUB_LOG"]) / "requeue").read_text().split("\n")[0] == "requeue 4242", log
    assert elapsed < 5, log
    assert status == 128 + signal.SIGTERM, log  # the training was stopped with SIGTERM; its status is the script's


@needs_bash
def test_slurm_launch_line_trains_with_two_processes(tmp_path):
    torchrun = _venv_tool("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not installed")
    data = _image_folder(tmp_path / "data")
    port = _free_port()
    env = _slurm_env(tmp_path, torchrun, port)
    user = [*TINY, f"data.data_dir={data}"]
    run = tmp_path / "runs" / "slurm-4242"

    r = _run_script(env, tmp_path, *user, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    srun = _args(env, "srun")
    assert srun[srun.index(torchrun) + 1:] == _launch(port, 1, "localhost",
                                                      ["--out", str(tmp_path / "runs"), "--name", "slurm-4242"], user)
    assert (run / "encoder.safetensors").is_file()
    assert (run / "checkpoint.pt").is_file()
    assert json.loads((run / "meta.json").read_text())["world_size"] == 2
    first = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 1

    # The requeue case: the same job id starts again, finds the run and resumes it: nothing left to train.
    env["MASTER_PORT"] = str(_free_port())
    r = _run_script(env, tmp_path, *user, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert ["--resume", str(run)] == _args(env, "srun")[-len(user) - 3:-len(user) - 1]
    assert "already trained" in r.stdout + r.stderr
    again = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    assert (again["epoch"], again["step"]) == (1, first["step"])
