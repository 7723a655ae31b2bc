"""Training throughput per preset and precision, ops and host syncs per step; optionally the
same measured for another checkout of viclab in the same run (before/after, side by side).

Each measurement runs the training loop's own pieces (``make_views``, the engine's
``train_step``) on synthetic CIFAR-sized uint8 data held on the device, exactly as ``viclab
train`` does, in a fresh worker process whose ``PYTHONPATH`` picks the code: this checkout's
``src`` ("after") or ``--before DIR`` (e.g. a ``git worktree`` of an older commit's ``src``).
Rounds alternate the codes so that a machine whose speed drifts affects both alike; medians
over rounds are reported.

Ops per step: top-level ATen calls of one step under ``torch.profiler`` (views, forward,
backward, optimiser). Host syncs per step: on CUDA, the synchronisations
``torch.cuda.set_sync_debug_mode`` reports; on the CPU, the calls that would block a GPU step
(``nonzero``, including boolean-mask indexing, ``.item()``, and tensors built from host data).
On CUDA, also times whole epochs of the exercise preset on real CIFAR-10 (``--epochs``).

    python benchmarks/train_throughput.py --presets cpu --precisions fp32 bf16 --before /tmp/base/src
    python benchmarks/train_throughput.py --epochs 3 --data-dir DIR   # GPU: seconds per epoch
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
# ATen calls that make a GPU step wait for the device (or copy from the host) on every call.
SYNCING = ("aten::nonzero", "aten::_local_scalar_dense", "aten::lift_fresh")


def worker(preset: str, precision: str, steps: int, warmup: int, n_images: int, batch_size: int = 0,
           overrides: tuple[str, ...] = ()) -> dict:
    """One (code, preset, precision) measurement, in this process (run by :func:`measure`); ``overrides``:
    ``section.field=value`` changes of the preset (e.g. ``model.compile=true``)."""
    from torch.profiler import ProfilerActivity, profile

    import viclab
    from viclab.config import resolve
    from viclab.core.runtime import select_runtime
    from viclab.engine.loop import forward_loss, train_step
    from viclab.engine.vicreg import make_loss, make_optimizer, make_views, vicreg_objective
    from viclab.models import build_vicreg_model
    from viclab.views import Augment

    cfg = resolve("train", preset, overrides=list(overrides))
    rt = select_runtime(cfg.train.device, precision)
    cuda = rt.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, device=rt.device)
    model, _ = build_vicreg_model(cfg.model)
    model.to(rt.device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    augment, loss_fn = Augment(cfg.augment), make_loss(cfg)
    objective = vicreg_objective(model, model, loss_fn, [make_optimizer(cfg, model)], None, "")
    # As the engine does (Objective.compile): the step's forward passes and loss compiled as one graph.
    forward_fn = torch.compile(forward_loss) if cfg.model.compile else forward_loss
    gen = torch.Generator(device=rt.device).manual_seed(0)
    b = batch_size or cfg.train.batch_size

    def step() -> float:
        idx = torch.randint(0, n_images, (b,), generator=gen, device=rt.device)
        sync()
        t0 = time.perf_counter()
        views = make_views(images[idx], augment, gen, cfg.model.channels_last)
        sync()
        t1 = time.perf_counter()
        train_step(objective.module, objective, views, rt, forward=forward_fn)
        sync()
        return time.perf_counter() - t0, t1 - t0

    first = step()[0]  # with model.compile: the compilation (Inductor's caches on disk make a rerun's shorter)
    skip = max(0, warmup - 1)
    times = [step() for _ in range(skip + steps)][skip:]
    parts = step_parts(objective, forward_fn, lambda: make_views(images[torch.randint(
        0, n_images, (b,), generator=gen, device=rt.device)], augment, gen, cfg.model.channels_last), rt, sync, steps)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    def in_optimizer(e) -> bool:  # torch's optimisers wrap step() in record_function("Optimizer.step#...")
        while e is not None:
            if e.name.startswith("Optimizer.step"):
                return True
            e = e.cpu_parent
        return False

    events = [e for e in prof.events() if e.name.startswith("aten::")]
    top = [e for e in events if e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")]
    names = collections.Counter(e.name for e in events if not in_optimizer(e))
    # On the CPU, Adam reads each parameter's step counter with .item(): a host tensor there and on
    # CUDA without fused=True (no device sync), a device tensor under fused Adam (no .item()).
    optimizer_reads = sum(1 for e in events if in_optimizer(e) and e.name == "aten::_local_scalar_dense")
    syncs = sum(names[k] for k in SYNCING)
    if cuda:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            step()
            torch.cuda.set_sync_debug_mode(0)
        syncs = sum("synchroniz" in str(w.message) for w in caught)
    med_step = statistics.median(t for t, _ in times)
    med_data = statistics.median(d for _, d in times)
    return {"code": str(Path(viclab.__file__).parents[1]),
            "device": str(rt.device), "precision": rt.precision, "batch_size": b, "backbone": cfg.model.backbone,
            "overrides": list(overrides), "view_size": cfg.augment.size,
            "local_crops": getattr(cfg.augment, "local_crops", 0), "first_step_s": first, "compile": cfg.model.compile,
            "images_per_s": b / med_step, "median_step_s": med_step, "median_views_s": med_data, **parts,
            "matmul_gflop_per_s": matmul_gflops() if not cuda else None,
            "views_share": med_data / med_step, "ops_per_step": len(top), "host_syncs_per_step": syncs,
            "syncing_calls": {k: names[k] for k in SYNCING}, "optimizer_host_scalar_reads": optimizer_reads}


def step_parts(objective, forward_fn, views, rt, sync, steps: int) -> dict:
    """Where a step's time goes: median seconds of its views, forward passes and loss, backward pass and
    optimiser step (the pieces of ``train_step``, timed apart), and the step's floating-point operations per
    second (forward and backward, counted by ``FlopCounterMode``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from viclab.engine.loop import forward_loss

    opt = objective.optimizers[0]
    t = collections.defaultdict(list)
    for _ in range(steps):
        t0 = time.perf_counter()
        v = views()
        sync()
        t1 = time.perf_counter()
        terms = forward_fn(objective.module, objective, v, rt)
        sync()
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        terms[0].backward()
        sync()
        t3 = time.perf_counter()
        opt.step()
        sync()
        t4 = time.perf_counter()
        for name, dt in (("views", t1 - t0), ("forward", t2 - t1), ("backward", t3 - t2), ("optimizer", t4 - t3)):
            t[name].append(dt)
    with FlopCounterMode(display=False) as counter:
        v = views()
        objective.optimizers[0].zero_grad(set_to_none=True)
        forward_loss(objective.module, objective, v, rt)[0].backward()
    med = {k: statistics.median(x) for k, x in t.items()}
    flops = counter.get_total_flops()
    return {"parts_s": med, "step_gflop": flops / 1e9,
            "gflop_per_s": flops / 1e9 / (med["forward"] + med["backward"])}


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """The machine's fp32 matrix-multiply rate at this thread count: a reference for the step's GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _parts(row: dict) -> str:
    if "parts_s" not in row:  # a code from before the breakdown
        return ""
    ms = " / ".join(f"{1e3 * row['parts_s'][k]:.0f}" for k in ("forward", "backward", "optimizer"))
    ref = row.get("matmul_gflop_per_s")
    share = f" ({100 * row['gflop_per_s'] / ref:.0f}%)" if ref else ""
    return f"{ms:>19s}   {row['gflop_per_s']:.0f}{share}"


def measure(src: Path, preset: str, precision: str, args) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    name, _, sets = preset.partition(":")  # "cpu:model.compile=true,augment.size=24"
    cmd = [sys.executable, __file__, "--worker", name, precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--images", str(args.images), "--batch-size", str(args.batch_size),
           *(["--set", *sets.split(",")] if sets else [])]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_epochs(epochs: int, data_dir: str | None) -> dict:
    """Whole epochs of the exercise preset via ``viclab.engine.train`` (GPU use)."""
    import tempfile

    from viclab.config import resolve
    from viclab.core.context import Context
    from viclab.engine import train

    overrides = [f"train.epochs={epochs}"] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    cfg = resolve("train", "exercise", overrides=overrides)
    with tempfile.TemporaryDirectory() as d:
        t = [time.perf_counter()]
        echo = lambda s: (print(s), t.append(time.perf_counter()))
        train(cfg, Path(d) / "run", ctx=Context(progress=False, echo=echo))
        times = [b - a for a, b in zip(t, t[1:])]
        log = [json.loads(x) for x in (Path(d) / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": epochs, "seconds_per_epoch": times,
            "median_s_per_epoch_after_first": statistics.median(times[1:]) if len(times) > 1 else times[0],
            "last_test_terms": [r for r in log if r["split"] == "test"][-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu", "exercise"],
                    help="presets, each maybe with overrides: cpu:model.compile=true,augment.size=24")
    ap.add_argument("--set", nargs="*", default=[], help=argparse.SUPPRESS)  # a worker's overrides
    ap.add_argument("--precisions", nargs="+", default=["auto"])
    ap.add_argument("--before", help="another checkout's src directory, measured alongside this one")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--batch-size", type=int, default=0, help="images per step (default: the preset's, which "
                    "may differ between the two codes)")
    ap.add_argument("--epochs", type=int, default=0, help="also time N whole exercise epochs (real data)")
    ap.add_argument("--data-dir")
    ap.add_argument("--name", default="train_throughput")
    ap.add_argument("--worker", nargs=2, metavar=("PRESET", "PRECISION"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker, args.steps, args.warmup, args.images, args.batch_size,
                                tuple(args.set))))
        return
    codes = {"after": SRC, **({"before": Path(args.before)} if args.before else {})}
    runs: dict[str, list[dict]] = collections.defaultdict(list)
    for r in range(args.rounds):
        for preset in args.presets:
            for precision in args.precisions:
                for code, src in (codes.items() if r % 2 == 0 else reversed(codes.items())):
                    res = measure(src, preset, precision, args)
                    runs[f"{code} {preset} {res['precision']}"].append(res)
    rows = {}
    print(f"{'code preset precision':48s} {'images/s':>9s} {'views s':>8s} {'views %':>7s} {'ops/step':>8s} "
          f"{'syncs/step':>10s} {'1st step s':>10s}  fwd / bwd / opt ms   GFLOP/s (% of matmul)")
    for key, rs in runs.items():
        row = {**rs[0], "images_per_s": statistics.median(x["images_per_s"] for x in rs),
               "median_step_s": statistics.median(x["median_step_s"] for x in rs),
               "median_views_s": statistics.median(x["median_views_s"] for x in rs),
               "rounds_images_per_s": [x["images_per_s"] for x in rs],
               "first_step_s": statistics.median(x.get("first_step_s", float("nan")) for x in rs)}
        row["views_share"] = row["median_views_s"] / row["median_step_s"]
        rows[key] = row
        print(f"{key:48s} {row['images_per_s']:9.1f} {row['median_views_s']:8.4f} {100 * row['views_share']:6.1f}% "
              f"{row['ops_per_step']:8d} {row['host_syncs_per_step']:10d} {row['first_step_s']:10.1f}  "
              f"{_parts(row)}")
    payload = {"rows": rows, "before": args.before, "rounds": args.rounds}
    if args.epochs:
        payload["exercise_epochs"] = time_epochs(args.epochs, args.data_dir)
        print("seconds per epoch:", [round(s, 1) for s in payload["exercise_epochs"]["seconds_per_epoch"]])
    write_result(args.name, payload)


if __name__ == "__main__":
    main()
