"""Data-parallel training with torchrun on CPU processes (gloo), against one process.

Two processes of batch b must train exactly like one process of batch 2b on the same global
batches: the variance and covariance are computed on the gathered batch, BatchNorm (with
model.sync_bn) on the global batch, and DDP averages the gradients. Only float summation
order differs, so the first step's loss agrees to float32 rounding, and the training
dynamics then amplify that rounding: measured over 24 steps of this model, the largest
relative loss difference is 7e-3 at lr 1e-3, 6e-5 at lr 1e-4 and 6e-7 at lr 3e-5 (the
variance hinge and ReLUs switch on rounding-level differences, and Adam turns the pure-noise
gradients of parameters the loss cannot see into full-size steps). The test runs at
lr 3e-5, where the loss still falls by ~7% over the 24 steps. How far the rounding grows
depends on the CPU's kernels: 6e-7 on one development machine, 3.3e-5 on another (AVX-512,
the same code), so the bound over 24 steps is 1e-4, while the first step, before any
amplification, must agree to 1e-6. A missing gather (7e-3 from the first step) or BatchNorm
without SyncBatchNorm (1.1e-3 at the first step) fail both bounds.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from viclab.engine.rundir import read_metrics

WORKER = Path(__file__).with_name("ddp_worker.py")
LAUNCHER_WORKER = Path(__file__).with_name("launcher_worker.py")
TORCHRUN = Path(sys.executable).parent / "torchrun"
B = 16  # per process; one process runs 2 * B
N_IMAGES = 12 * 2 * B  # 12 global batches per epoch
LR = 3e-5
STEPS = 24
# The loss is blind to these (the bias of a Linear followed by BatchNorm, the running mean that
# follows it, and the projection's bias, which invariance, variance and covariance all cancel):
# their gradients are rounding noise, which Adam turns into steps of up to lr in either direction.
LOSS_BLIND = ("projector.0.bias", "projector.1.running_mean", "projector.3.bias")


def _images(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", N_IMAGES), ("test", 8)):
        for i in range(n):
            d = root / split / f"c{i % 3}"
            d.mkdir(parents=True, exist_ok=True)
            base = np.zeros((16, 16, 3)) + rng.uniform(0, 255, 3)
            Image.fromarray(np.clip(base + rng.normal(0, 50, base.shape), 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env.pop("WORLD_SIZE", None)
    return env


def _run(procs: int, run: Path, data: Path, batch: int, epochs: int, sync_bn: bool, kill_at: int = -1,
         resume: bool = False, check: bool = True, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    args = [str(WORKER), str(run), str(data), str(batch), str(epochs), str(sync_bn).lower(), str(kill_at),
            f"optim.lr={LR}", *extra]
    args += ["resume"] if resume else []
    cmd = ([str(TORCHRUN), "--standalone", f"--nproc_per_node={procs}", *args] if procs > 1
           else [sys.executable, *args])
    out = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if check:
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _losses(run: Path) -> np.ndarray:
    return np.array([r["loss"] for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"])


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=False)["model"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    data = _images(tmp / "data")
    _run(1, tmp / "one", data, 2 * B, 2, True)
    two = _run(2, tmp / "two", data, B, 2, True)
    (tmp / "two.stderr").write_text(two.stderr)
    return tmp, data


def test_the_batch_gather_warns_of_no_deprecated_collective(runs):
    """torch.distributed.nn.functional.all_gather is deprecated (torch 2.13): it warned on every rank."""
    tmp, _ = runs
    stderr = (tmp / "two.stderr").read_text()
    assert "all_gather" not in stderr and "deprecated" not in stderr, stderr[-3000:]


def test_two_processes_train_like_one_process_with_twice_the_batch(runs):
    tmp, _ = runs
    one, two = _losses(tmp / "one"), _losses(tmp / "two")
    assert len(one) == len(two) == STEPS  # 2 epochs of 12 global batches of 32
    assert one[-1] < 0.97 * one[0]  # the runs went somewhere: equal losses are not a frozen model's
    rel = np.abs(two - one) / np.abs(one)
    assert rel[0] < 1e-6, rel
    assert rel.max() < 1e-4, rel
    # Weights the loss sees agree to 1e-4 (measured: 3e-5; a weight moves at most STEPS * LR = 7e-4 in
    # all). The loss-blind ones can only be bounded by how far Adam can walk them: STEPS * LR.
    a, b = _weights(tmp / "one"), _weights(tmp / "two")
    assert a.keys() == b.keys()
    diff = {k: float((a[k].float() - b[k].float()).abs().max()) for k in a}
    assert max(d for k, d in diff.items() if k not in LOSS_BLIND and "running_" not in k) < 1e-4, diff
    # BatchNorm's running statistics are never seen by the training loss either (training normalises
    # by batch statistics): they average activations (magnitude ~1 here) and carry their rounding,
    # measured up to 3.2e-4 apart on an AVX-512 CPU.
    assert max(d for k, d in diff.items() if "running_" in k) < 1e-3, diff
    assert max(diff[k] for k in LOSS_BLIND) <= STEPS * LR, diff
    meta = json.loads((tmp / "two" / "meta.json").read_text())
    assert meta["world_size"] == 2
    assert not (tmp / "two" / "tb").exists() or len(list((tmp / "two" / "tb").glob("events.*"))) == 1  # rank 0 only


def test_without_sync_bn_batchnorm_sees_each_process_alone(runs):
    """Without SyncBatchNorm each process normalises by its own b samples: the loss of the very
    first step already differs from one process's (same weights, same images, other statistics)."""
    tmp, data = runs
    _run(2, tmp / "local_bn", data, B, 1, False)
    one, local = _losses(tmp / "one")[:12], _losses(tmp / "local_bn")
    assert abs(local[0] - one[0]) / abs(one[0]) > 1e-4
    assert np.all(np.isfinite(local))


def test_two_process_run_killed_mid_epoch_resumes_to_the_same_end(runs):
    tmp, data = runs
    killed = _run(2, tmp / "killed", data, B, 2, True, kill_at=12 + 5, check=False)
    assert killed.returncode != 0
    assert torch.load(tmp / "killed" / "checkpoint.pt", weights_only=False)["epoch"] == 1
    _run(2, tmp / "killed", data, B, 2, True, resume=True)
    a, b = _weights(tmp / "two"), _weights(tmp / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert np.array_equal(_losses(tmp / "two"), _losses(tmp / "killed"))


def test_resuming_with_another_world_size_follows_the_rule(runs):
    """Killed as 2 processes with optim.lr_scaling=linear, resumed as 1: the run continues from its last
    epoch, says so, and the global batch (train.batch_size per process) and the learning rate follow the
    new world size: epoch 2 takes twice the steps of half the batch, at LR instead of 2 x LR."""
    tmp, data = runs
    run = tmp / "shrunk"
    killed = _run(2, run, data, B, 2, True, kill_at=12 + 3, check=False, extra=("optim.lr_scaling=linear",))
    assert killed.returncode != 0
    out = _run(1, run, data, B, 2, True, resume=True)
    assert "written by 2 process(es) and continues with 1" in out.stdout
    records = [r for r in read_metrics(run / "metrics.jsonl") if r["split"] == "train"]
    assert [r["step"] for r in records] == list(range(1, 12 + 24 + 1))
    # The cosine schedule continues at the same fraction of the run, counted in the new steps.
    cosine = lambda step, total: 0.5 * (1 + math.cos(math.pi * step / total))
    assert [r["lr"] for r in records if r["epoch"] == 1] == pytest.approx([2 * LR * cosine(i, 24) for i in range(12)])
    assert [r["lr"] for r in records if r["epoch"] == 2] == pytest.approx([LR * cosine(24 + i, 48) for i in range(24)])
    meta = json.loads((run / "meta.json").read_text())
    assert meta["world_size"] == 2 and meta["resumes"][-1]["world_size"] == 1


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's exit is reaped by whoever adopted it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc (Linux)")
def test_ranks_exit_soon_after_their_launcher_is_killed(tmp_path):
    """SIGKILL of torchrun: rank 1 waits for rank 0 in a barrier, rank 0 works alone; both must
    notice that the launcher is gone and exit within seconds, not the process group's 60 minutes."""
    log = (tmp_path / "ranks.log").open("w")
    launcher = subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc_per_node=2", str(LAUNCHER_WORKER),
                                 str(tmp_path)], env=_env(), stdout=log, stderr=subprocess.STDOUT)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(pids) < 2 and time.monotonic() < deadline and launcher.poll() is None:
            pids = [int(p.read_text()) for p in tmp_path.glob("rank*.pid") if p.read_text()]
            time.sleep(0.2)
        assert len(pids) == 2, (tmp_path / "ranks.log").read_text()[-3000:]
        time.sleep(1)  # rank 1 is in its barrier
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        gone_by = time.monotonic() + 30
        while any(_alive(p) for p in pids) and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert not any(_alive(p) for p in pids), "ranks outlived their launcher by 30 s"
        log.flush()
        assert "the launcher of this rank" in (tmp_path / "ranks.log").read_text()
    finally:
        launcher.kill()
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()


def test_a_numbered_gpu_under_torchrun_is_refused(monkeypatch):
    """train.device=cuda:N under torchrun would put every rank on GPU N; plain cuda (or auto) maps
    each rank to the GPU of its LOCAL_RANK."""
    from viclab.core.errors import ViclabError
    from viclab.core.runtime import select_runtime

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for device in ("cuda:0", "cuda:1"):
        with pytest.raises(ViclabError, match=f"device '{device}' under torchrun puts all 2 processes on one GPU; "
                                              "use train.device=cuda"):
            select_runtime(device, "fp32")
    assert select_runtime("cuda", "fp32").device == torch.device("cuda", 1)
    assert select_runtime("auto", "fp32").device == torch.device("cuda", 1)
    monkeypatch.setenv("WORLD_SIZE", "1")  # one process may pick any GPU
    assert select_runtime("cuda:0", "fp32").device == torch.device("cuda", 0)
