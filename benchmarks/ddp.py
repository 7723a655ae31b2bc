"""Data-parallel scaling: steps/s of 1 and 2 processes, scaling efficiency, communication share.

Each process runs the training engine's own step (``train_step`` on a DDP-wrapped pair
forward, the VICReg loss gathering the global batch, SyncBatchNorm) on synthetic
CIFAR-sized uint8 images held on its device, with the same batch per process (weak scaling:
2 processes train a global batch twice as large). Measured, side by side in one invocation:

- 1 process with as many threads as each of the 2 processes (the scaling reference), and
  1 process with all the threads (what one process on this machine would use);
- 2 processes under torchrun (gloo on the CPU, NCCL on GPUs), and the same 2 processes with
  no communication at all (DDP's ``no_sync``, local loss statistics, local BatchNorm): the
  difference is the share of a step spent communicating (and waiting for the other rank).

    python benchmarks/ddp.py [--preset cpu] [--batch 128] [--steps 20]

On a GPU machine with one GPU, the 1-process figures are measured on it; 2 processes need 2 GPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from viclab.config import get_preset  # noqa: E402
from viclab.core.runtime import get_rank, get_world_size, init_distributed, select_runtime  # noqa: E402
from viclab.engine.loop import train_step  # noqa: E402
from viclab.engine.vicreg import make_loss, make_optimizer, make_views, vicreg_objective  # noqa: E402
from viclab.models import build_vicreg_model  # noqa: E402
from viclab.models.sync_bn import convert_sync_batchnorm  # noqa: E402
from viclab.views import Augment  # noqa: E402


def worker(preset: str, batch: int, steps: int, warmup: int, communicate: bool, out: str) -> None:
    """One process's timing: median seconds per step (after warm-up)."""
    cfg = get_preset(preset)
    rt = select_runtime(cfg.train.device, "fp32" if cfg.train.device == "cpu" else cfg.train.precision)
    init_distributed(rt.device)
    world = get_world_size()
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8, device=rt.device)
    model, _ = build_vicreg_model(cfg.model)
    model.to(rt.device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    if world > 1 and communicate:
        model = convert_sync_batchnorm(model, rt.device)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, gather_distributed=communicate))
    objective = vicreg_objective(model, model, make_loss(cfg), [make_optimizer(cfg, model)], None, "")
    module = objective.module
    if world > 1:
        module = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[rt.device] if rt.device.type == "cuda" else None, broadcast_buffers=communicate)
    augment = Augment(cfg.augment)
    gen = torch.Generator(device=rt.device).manual_seed(get_rank())
    times = []
    for i in range(warmup + steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen, device=rt.device)
        sync()
        t0 = time.perf_counter()
        views = make_views(images[idx], augment, gen, cfg.model.channels_last)
        with module.no_sync() if world > 1 and not communicate else contextlib.nullcontext():
            train_step(module, objective, views, rt)
        sync()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if get_rank() == 0:
        device = torch.cuda.get_device_name(rt.device) if rt.device.type == "cuda" else "cpu"
        Path(out).write_text(json.dumps({"step_s": statistics.median(times), "world": world, "device": device}))


def launch(procs: int, threads: int, communicate: bool, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        worker_args = [str(Path(__file__).resolve()), "--worker", "--preset", args.preset, "--batch", str(args.batch),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(out)]
        worker_args += [] if communicate else ["--no-communication"]
        torchrun = Path(sys.executable).parent / "torchrun"
        cmd = [str(torchrun), "--standalone", f"--nproc_per_node={procs}", *worker_args] if procs > 1 \
            else [sys.executable, *worker_args]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        return json.loads(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--batch", type=int, default=128, help="images per process and step")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-communication", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.preset, args.batch, args.steps, args.warmup, not args.no_communication, args.out)
        return
    gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    per = max(1, cores // 2)  # threads per process when two share the machine
    runs = {f"1 process, {per} thread(s)": launch(1, per, True, args)}
    if per != cores:
        runs[f"1 process, {cores} threads"] = launch(1, cores, True, args)
    if gpus == 1:
        print("one GPU: only the 1-process figures are measured (2 processes need 2 GPUs)")
    else:
        runs[f"2 processes x {per} thread(s)"] = launch(2, per, True, args)
        runs[f"2 processes x {per} thread(s), no communication"] = launch(2, per, False, args)
    for r in runs.values():
        r["steps_per_s"] = 1.0 / r["step_s"]
        r["images_per_s"] = r["world"] * args.batch / r["step_s"]
    result = {"preset": args.preset, "batch_per_process": args.batch, "steps": args.steps, "runs": runs}
    one = runs[f"1 process, {per} thread(s)"]
    two = runs.get(f"2 processes x {per} thread(s)")
    if two is not None:
        alone = runs[f"2 processes x {per} thread(s), no communication"]
        # Weak scaling: the ideal 2-process throughput is twice one process's (same batch per process).
        result["scaling_efficiency"] = two["images_per_s"] / (2 * one["images_per_s"])
        result["communication_share"] = max(0.0, (two["step_s"] - alone["step_s"]) / two["step_s"])
    for name, r in runs.items():
        print(f"{name:45s} {r['step_s'] * 1000:8.1f} ms/step  {r['steps_per_s']:6.2f} steps/s  "
              f"{r['images_per_s']:7.0f} images/s")
    if two is not None:
        print(f"scaling efficiency (2 processes vs 2 x one process of {per} thread(s)): "
              f"{result['scaling_efficiency']:.0%}; communication share of a 2-process step: "
              f"{result['communication_share']:.0%}")
    name = "ddp" if not gpus else f"ddp_{torch.cuda.get_device_name(0).replace(' ', '_')}"
    write_result(name, result)


if __name__ == "__main__":
    main()
