"""The CPU recipe search: which small-CNN recipe gives the best linear probe after <= 10 minutes
of training on this machine's 2 cores (issue 14; table in ``docs/cpu_recipe.md``).

Each candidate is a backbone (a ``SmallCNN`` width/downsampling variant, registered in
``viclab.models.BACKBONES`` for this process) plus ``section.field=value`` overrides of the
``cpu`` preset, with its epoch count chosen beforehand from its quiet images/s so that training
fits in the budget. It trains with ``viclab.engine.train`` on real CIFAR-10, then the linear probe
and 20-NN classifier run on all 50,000 / 10,000 images (``viclab.eval.run_probe``). One candidate
per invocation, so a queue survives interruptions; each appends a row to
``benchmarks/results/recipe_search.jsonl``.

    python benchmarks/recipe_search.py --speed base w48 ...   # quiet images/s of each backbone (bf16)
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
}
for _name, _kw in ARCHS.items():
    register(name=f"search_{_name}")((lambda kw: lambda: (lambda n: (n, n.feature_dim))(SmallCNN(**kw)))(_kw))

# The cpu preset when the search ran; candidates override it. (Its winner, F, is the cpu preset now.)
SEARCH_BASE = ["model.backbone=small_cnn", "optim.lr=2e-3", "train.batch_size=256", "train.epochs=2"]
# name -> (arch, overrides of SEARCH_BASE). Epochs fit 10 minutes at the arch's quiet images/s.
CANDIDATES: dict[str, tuple[str, list[str]]] = {
    "A": ("base", ["train.epochs=5"]),
    "B": ("base", ["train.epochs=5", "train.batch_size=128"]),
    "C": ("w48", ["train.epochs=3"]),
    "D": ("pf64", ["train.epochs=3"]),
    "E": ("w40", ["train.epochs=4"]),
    "F": ("base", ["train.epochs=5", "train.batch_size=128", "optim.lr=4e-3"]),
    "I": ("base", ["train.epochs=5", "train.batch_size=128", "optim.lr=8e-3"]),
    "J": ("w48", ["train.epochs=3", "train.batch_size=128", "optim.lr=4e-3"]),
}
LOG = RESULTS / "recipe_search.jsonl"


def speed(arch: str, batch_size: int = 256, steps: int = 6, warmup: int = 2) -> float:
    """Quiet training images/s of ``arch`` under the cpu preset (bf16 autocast, synthetic data)."""
    cfg = resolve("train", "cpu", overrides=[*SEARCH_BASE, f"model.backbone=search_{arch}",
                                           f"train.batch_size={batch_size}"])
    rt = select_runtime("cpu", "bf16")
    model, _ = build_vicreg_model(cfg.model)
    model.to(memory_format=torch.channels_last)
    objective = vicreg_objective(model, model, make_loss(cfg), [make_optimizer(cfg, model)], None, "")
    images = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
    augment, gen, times = Augment(cfg.augment), torch.Generator().manual_seed(0), []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, len(images), (batch_size,), generator=gen)
        train_step(objective.module, objective, make_views(images[idx], augment, gen, True), rt)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def run_candidate(name: str, out: Path) -> dict:
    arch, overrides = CANDIDATES[name]
    cfg = resolve("train", "cpu", overrides=[*SEARCH_BASE, f"model.backbone=search_{arch}", *overrides])
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
    ap.add_argument("--speed", nargs="*", help="print quiet images/s of these archs")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--out", default="/tmp/recipe_search")
    ap.add_argument("--table", action="store_true")
    args = ap.parse_args()
    for arch in args.speed or []:
        ips = speed(arch, args.batch_size)
        print(f"{arch:6s} {ips:6.0f} images/s  {600 * ips / 50_000:.1f} epochs in 600 s", flush=True)
    for name in args.candidates:
        run_candidate(name, Path(args.out))
    if args.table:
        print(table())


if __name__ == "__main__":
    main()
