"""The CPU recipe search: which small-CNN recipe gives the best linear probe after <= 10 minutes
of training on this machine's 2 cores (issue 14; table in ``docs/cpu_recipe.md``).

Each candidate is a backbone (a ``SmallCNN`` width/downsampling variant, registered in
``viclab.models.BACKBONES`` for this process) plus ``section.field=value`` overrides of the
``cpu`` preset, with its epoch count chosen beforehand from its quiet images/s so that training
fits in the budget. It trains with ``viclab.engine.train`` on real CIFAR-10, then the linear probe
and 20-NN classifier run on all 50,000 / 10,000 images (``viclab.eval.run_probe``). One candidate
per invocation, so a queue survives interruptions; each appends a row to
``benchmarks/results/recipe_search.jsonl``.

    python benchmarks/recipe_search.py --speed f24px fmc ...  # quiet images/s of each candidate
    python benchmarks/recipe_search.py A                       # train + probe candidate A
    python benchmarks/recipe_search.py --table                 # markdown table of the rows so far
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, machine  # noqa: E402

from viclab.config import resolve  # noqa: E402
from viclab.core.context import Context  # noqa: E402
from viclab.core.runtime import select_runtime  # noqa: E402
from viclab.engine import train  # noqa: E402
from viclab.engine.loop import train_step  # noqa: E402
from viclab.engine.vicreg import make_loss, make_optimizer, make_views, vicreg_objective  # noqa: E402
from viclab.eval.tasks import run_probe  # noqa: E402
from viclab.models import SmallCNN, build_vicreg_model  # noqa: E402
from viclab.models.registry import register  # noqa: E402
from viclab.views import Augment  # noqa: E402

# name -> SmallCNN keyword arguments. "base" is the cpu preset's small_cnn.
ARCHS: dict[str, dict] = {
    "base": {},
    "w40": {"widths": (40, 80, 160, 320)},
    "w48": {"widths": (48, 96, 192, 384)},
    "w64": {"widths": (64, 128, 256, 512)},
    "pf64": {"widths": (64, 128, 256, 512), "pool_first": True},
    "pf48": {"widths": (48, 96, 192, 384), "pool_first": True},
    "pf32": {"pool_first": True},
}
for _name, _kw in ARCHS.items():
    register(name=f"search_{_name}")((lambda kw: lambda: (lambda n: (n, n.feature_dim))(SmallCNN(**kw)))(_kw))

# Issue 14's round ran on a CPU with bf16 (AMX) over the cpu preset of then; issue 26's runs on 2 fp32 (AVX2) cores
# over issue 14's winner, F, without the per-epoch test terms (they take time and teach nothing).
SEARCH_BASE = ["model.backbone=small_cnn", "optim.lr=2e-3", "train.batch_size=256", "train.epochs=2"]
FP32_BASE = ["model.backbone=small_cnn", "optim.lr=4e-3", "train.batch_size=128", "train.epochs=5",
             "train.precision=fp32", "train.eval_test=false"]
# name -> (arch, overrides of SEARCH_BASE, or of FP32_BASE for names starting "f"). Epochs fit 10 minutes at the
# arch's quiet images/s.
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "A": ("base", ["train.epochs=5"]),
    "B": ("base", ["train.epochs=5", "train.batch_size=128"]),
    "C": ("w48", ["train.epochs=3"]),
    "D": ("pf64", ["train.epochs=3"]),
    "E": ("w40", ["train.epochs=4"]),
    "F": ("base", ["train.epochs=5", "train.batch_size=128", "optim.lr=4e-3"]),
    "I": ("base", ["train.epochs=5", "train.batch_size=128", "optim.lr=8e-3"]),
    "J": ("w48", ["train.epochs=3", "train.batch_size=128", "optim.lr=4e-3"]),
    "f32px": ("base", ["train.epochs=2"]),
    "f16px": ("base", ["augment.size=16", "train.epochs=4"]),
    "f24px": ("base", ["augment.size=24", "train.epochs=2"]),
    "f32pf": ("pf32", ["train.epochs=2", "optim.warmup_epochs=0.5"]),
    "f24pf": ("pf32", ["augment.size=24", "train.epochs=3", "optim.warmup_epochs=0.5"]),
    "f32mc2": ("base", ["augment.local_crops=2", "augment.local_size=16", "train.epochs=1",
                        "optim.warmup_epochs=0.5"]),
    "fpfmc2": ("pf32", ["augment.local_crops=2", "augment.local_size=16", "train.epochs=1",
                        "optim.warmup_epochs=0.5"]),
    "fpfmc4": ("pf32", ["augment.local_crops=4", "augment.local_size=16", "train.epochs=1",
                        "optim.warmup_epochs=0.5"]),
    "fpfmc1x2": ("pf32", ["augment.local_crops=1", "augment.local_size=16", "train.epochs=2",
                          "optim.warmup_epochs=0.5"]),
    "fpflr8": ("pf32", ["train.epochs=2", "optim.warmup_epochs=0.5", "optim.lr=8e-3"]),
    "fpf1": ("pf32", ["train.epochs=1", "optim.warmup_epochs=0.5"]),
    "fpf64": ("pf32", ["train.batch_size=64", "train.epochs=2", "optim.warmup_epochs=0.5"]),
    # The augmentation strengths: SimCLR's crop scale (0.08, 1) instead of the spec's (0.2, 1), and half the
    # colour jitter (a short run may learn more from easier pairs).
    "fpfcrop08": ("pf32", ["train.epochs=2", "optim.warmup_epochs=0.5", "augment.crop_scale=0.08,1"]),
    "fpfjit": ("pf32", ["train.epochs=2", "optim.warmup_epochs=0.5", "augment.brightness=0.2",
                        "augment.contrast=0.2", "augment.saturation=0.1", "augment.hue=0.05"]),
    # The projector: 1024-1024 (a quarter of the 2048-2048's second layer).
    "fpfproj1k": ("pf32", ["train.epochs=2", "optim.warmup_epochs=0.5", "model.projector=1024-1024"]),
}
LOG = RESULTS / "recipe_search.jsonl"


def candidate_config(name: str):
    arch, overrides = CANDIDATES[name]
    base = FP32_BASE if name.startswith("f") else SEARCH_BASE
    return resolve("train", "cpu", overrides=[*base, f"model.backbone=search_{arch}", *overrides])


def speed(name: str, steps: int = 6, warmup: int = 2) -> float:
    """Quiet training images/s of candidate ``name`` (its views, backbone, batch and precision; synthetic data)."""
    cfg = candidate_config(name)
    rt = select_runtime("cpu", cfg.train.precision if name.startswith("f") else "bf16")
    model, _ = build_vicreg_model(cfg.model)
    model.to(memory_format=torch.channels_last)
    objective = vicreg_objective(model, model, make_loss(cfg), [make_optimizer(cfg, model)], None, "")
    images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
    augment, gen, times, b = Augment(cfg.augment), torch.Generator().manual_seed(0), [], cfg.train.batch_size
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(images), (b,), generator=gen)
        train_step(objective.module, objective, make_views(images[idx], augment, gen, True), rt)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return b / statistics.median(times)


def run_candidate(name: str, out: Path) -> dict:
    arch, overrides = CANDIDATES[name]
    cfg = candidate_config(name)
    run_dir = out / name
    lines: list[str] = []
    t0 = time.perf_counter()
    result = train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(),
                   ctx=Context(progress=False, echo=lambda line: (print(line, flush=True), lines.append(line))))
    seconds = time.perf_counter() - t0
    # Each epoch line ends "(R examples/s, S s)": the fastest epoch's rate is the quiet machine's.
    epoch_s = [float(m.group(1)) for m in map(re.compile(r"examples/s, ([0-9.]+)s\)").search, lines) if m]
    probe = run_probe(run_dir, out=run_dir / "eval", ctx=Context(progress=False))
    row = {"candidate": name, "arch": arch, "arch_kwargs": ARCHS[arch], "overrides": overrides,
           "train_seconds_wall": seconds, "epoch_seconds": epoch_s,
           "train_seconds_quiet": len(epoch_s) * min(epoch_s) if epoch_s else None,
           "linear_top1": probe["linear"]["top1"], "linear_top5": probe["linear"]["top5"],
           "knn_top1": probe["knn"]["top1"], "final_train": result.train, "final_test": result.test,
           "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
    with LOG.open("a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("candidate", "train_seconds_wall", "linear_top1", "knn_top1")}))
    return row


def probe_resized(run_dir: Path, size: int) -> float:
    """Linear-probe top-1 of a run's encoder on CIFAR-10 images bilinearly resized (antialiased) to ``size``."""
    import torch.nn.functional as F

    from viclab.data import load_images
    from viclab.engine.checkpoint import load_encoder
    from viclab.eval.probe import linear_probe
    from viclab.views import eval_transform

    encoder, _, cfg = load_encoder(run_dir / "encoder.safetensors")
    encoder.eval()

    @torch.no_grad()
    def features(data):
        out = []
        for i in range(0, len(data), 1000):
            x = F.interpolate(eval_transform(data.images[i:i + 1000], cfg.augment, "image"), size=size,
                              mode="bilinear", antialias=True)
            out.append(encoder(x.contiguous(memory_format=torch.channels_last)))
        return torch.cat(out)

    train_data, test_data = (load_images("cifar10", s, cfg.data.data_dir, 32) for s in ("train", "test"))
    return linear_probe(features(train_data), train_data.labels, features(test_data), test_data.labels).top1


def table() -> str:
    rows = [json.loads(line) for line in LOG.read_text().splitlines()]
    lines = ["| candidate | backbone | overrides of the base | training s (quiet) | linear top-1 | 20-NN top-1 |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        quiet = f"{r['train_seconds_quiet']:.0f}" if r.get("train_seconds_quiet") else "—"
        lines.append(f"| {r['candidate']} | {r['arch']} {r['arch_kwargs'] or ''} | {' '.join(r['overrides'])} | "
                     f"{quiet} | {100 * r['linear_top1']:.2f}% | {100 * r['knn_top1']:.2f}% |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidates", nargs="*")
    ap.add_argument("--speed", nargs="*", help="print quiet images/s of these candidates")
    ap.add_argument("--out", default="/tmp/recipe_search")
    ap.add_argument("--table", action="store_true")
    ap.add_argument("--resize", nargs="+", metavar=("NAME", "SIZE"), help="probe candidate NAME's encoder on "
                    "images resized to each SIZE (train/test resolution mismatch)")
    ap.add_argument("--floor", nargs="*", help="probe a random-init encoder of these archs (the untrained floor)")
    args = ap.parse_args()
    if args.resize:
        name, sizes = args.resize[0], map(int, args.resize[1:])
        for size in sizes:
            print(f"{name} at {size} px: linear top-1 {100 * probe_resized(Path(args.out) / name, size):.2f}%")
    for arch in args.floor or []:
        probe = run_probe(f"random:search_{arch}", out=Path(args.out) / f"random-{arch}", ctx=Context(progress=False))
        row = {"candidate": f"random:{arch}", "arch": arch, "arch_kwargs": ARCHS[arch], "overrides": [],
               "linear_top1": probe["linear"]["top1"], "linear_top5": probe["linear"]["top5"],
               "knn_top1": probe["knn"]["top1"], "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine()}
        with LOG.open("a") as f:
            f.write(json.dumps(row) + "\n")
    for name in args.speed or []:
        ips = speed(name)
        print(f"{name:8s} {ips:6.0f} images/s  {600 * ips / 50_000:.1f} epochs in 600 s", flush=True)
    for name in args.candidates:
        run_candidate(name, Path(args.out))
    if args.table:
        print(table())


if __name__ == "__main__":
    main()
