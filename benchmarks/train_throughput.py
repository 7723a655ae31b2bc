"""Training throughput per preset and the share of step time spent on data + augmentation.

Runs the training loop's own pieces (``make_views``, the engine's ``train_step``) on synthetic
CIFAR-sized uint8 data held on the device, exactly as ``viclab train`` does.
On CUDA, also times whole epochs of the exercise preset on real CIFAR-10.

    python benchmarks/train_throughput.py [--presets cpu exercise] [--steps 5]
    python benchmarks/train_throughput.py --epochs 3 --data-dir DIR   # GPU: seconds per epoch
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from viclab.augment import Augment  # noqa: E402
from viclab.config import get_preset  # noqa: E402
from viclab.models import build_vicreg_model  # noqa: E402
from viclab.runtime import select_runtime  # noqa: E402
from viclab.train.engine import train_step  # noqa: E402
from viclab.train.vicreg import make_loss, make_optimizer, make_views, vicreg_objective  # noqa: E402


def time_preset(name: str, steps: int, warmup: int, n_images: int) -> dict:
    cfg = get_preset(name)
    rt = select_runtime(cfg.train.device, cfg.train.precision)
    sync = torch.cuda.synchronize if rt.device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, device=rt.device)
    model, _ = build_vicreg_model(cfg.model)
    model.to(rt.device)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.model.compile else model
    augment, loss_fn = Augment(cfg.augment), make_loss(cfg)
    opt = make_optimizer(cfg, model.parameters())
    objective = vicreg_objective(model, forward, loss_fn, opt, None, "")
    gen = torch.Generator(device=rt.device).manual_seed(0)
    b = cfg.train.batch_size
    data_t, step_t = [], []
    for i in range(warmup + steps):
        idx = torch.randint(0, n_images, (b,), generator=gen, device=rt.device)
        sync()
        t0 = time.perf_counter()
        v1, v2 = make_views(images[idx], augment, gen, cfg.model.channels_last)
        sync()
        t1 = time.perf_counter()
        train_step(objective.module, objective, (v1, v2), rt)
        sync()
        t2 = time.perf_counter()
        if i >= warmup:
            data_t.append(t1 - t0)
            step_t.append(t2 - t0)
    med_step, med_data = statistics.median(step_t), statistics.median(data_t)
    out = {"device": str(rt.device), "batch_size": b, "backbone": cfg.model.backbone,
           "images_per_s": b / med_step, "median_step_s": med_step, "median_data_aug_s": med_data,
           "data_aug_share": med_data / med_step, "steps": steps, "step_times_s": step_t}
    print(f"{name:10s} {out['device']:6s} {out['images_per_s']:9.1f} img/s  step {med_step:.3f}s  "
          f"data+aug {med_data:.4f}s ({100 * out['data_aug_share']:.1f}% of the step)")
    return out


def time_epochs(epochs: int, data_dir: str | None) -> dict:
    """Whole epochs of the exercise preset via ``viclab.train.train`` (GPU use)."""
    import json
    import tempfile

    from viclab.config import resolve_config
    from viclab.train import train

    overrides = [f"train.epochs={epochs}"] + ([f"data.data_dir={data_dir}"] if data_dir else [])
    cfg = resolve_config("exercise", overrides=overrides)
    times = []
    with tempfile.TemporaryDirectory() as d:
        t = [time.perf_counter()]
        train(cfg, Path(d) / "run", progress=False, echo=lambda s: (print(s), t.append(time.perf_counter())))
        times = [b - a for a, b in zip(t, t[1:])]
        log = [json.loads(x) for x in (Path(d) / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"epochs": epochs, "seconds_per_epoch": times,
            "median_s_per_epoch_after_first": statistics.median(times[1:]) if len(times) > 1 else times[0],
            "last_test_terms": [r for r in log if r["split"] == "test"][-1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["cpu", "exercise"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--epochs", type=int, default=0, help="also time N whole exercise epochs (real data)")
    ap.add_argument("--data-dir")
    ap.add_argument("--name", default="train_throughput")
    args = ap.parse_args()
    res = {p: time_preset(p, args.steps, args.warmup, args.images) for p in args.presets}
    payload = {"presets": res}
    if args.epochs:
        payload["exercise_epochs"] = time_epochs(args.epochs, args.data_dir)
        print("seconds per epoch:", [round(s, 1) for s in payload["exercise_epochs"]["seconds_per_epoch"]])
    write_result(args.name, payload)


if __name__ == "__main__":
    main()
