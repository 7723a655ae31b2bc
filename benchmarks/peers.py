"""viclab against a peer library (lightly) on the same CPU: the same network (``small_cnn`` + projector
"2048-2048" of the ``cpu`` preset, same initial weights) trained for the same wall-clock budget by each, then
the linear probe of each trained backbone on CIFAR-10 (opt-in, not in CI).

viclab side: its own pieces in a fresh process (uint8 CIFAR-10 in memory, ``make_views`` with the preset's T,
``vicreg_objective``, ``train_step``). lightly side: the usual lightly stack in a fresh process under a separate
venv (``torch==2.14.1 torchvision==0.29.1 lightly``; viclab itself never imports torchvision):
``torchvision.datasets.CIFAR10`` + lightly's ``VICRegTransform`` (set as close to the preset's T as it allows)
+ ``DataLoader`` + ``lightly.loss.VICRegLoss`` (weights matched to viclab's loss). Both: AdamW at the preset's
rate and weight decay, linear warm-up then a cosine to zero over the wall-clock budget, batch 128, fp32,
``--threads`` torch threads. Rounds
alternate the order (viclab first on even rounds). Each backbone is probed in this process with viclab's linear
probe (all 50,000 / 10,000 images unless ``--probe-subset``); top-1 with its 95% Wilson interval.

    python benchmarks/peers.py --setup                     # once: builds ~/.cache/viclab/peers-venv (~5.5 GB)
    python benchmarks/peers.py --seconds 600 --rounds 2    # -> benchmarks/results/peers.json
    OMP_NUM_THREADS=1 python benchmarks/peers.py --seconds 5 --threads 1 --probe-subset 2000   # smoke test
"""

from __future__ import annotations

import argparse
import json
import math
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

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
DEFAULT_VENV = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "viclab" / "peers-venv"
PEER_PACKAGES = ["torch==2.14.1", "torchvision==0.29.1", "lightly", "safetensors", "numpy"]
PEER_CHECK = ("import torch, torchvision, lightly, safetensors, numpy; "
              "assert torch.__version__.split('+')[0] == '2.14.1', torch.__version__; "
              "assert torchvision.__version__.split('+')[0] == '0.29.1', torchvision.__version__")
SIDES = ("viclab", "lightly")


def peer_ready(py: Path) -> bool:
    """Whether ``py`` imports every peer package at the pinned torch and torchvision versions."""
    return py.exists() and subprocess.run([py, "-c", PEER_CHECK], capture_output=True).returncode == 0


def setup(venv: Path) -> Path:
    """The peer venv's python, creating the venv and installing :data:`PEER_PACKAGES` unless it already has them."""
    py = venv / "bin" / "python"
    if peer_ready(py):
        print(f"{venv}: ready")
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([py, "-m", "pip", "install", *PEER_PACKAGES], check=True)
    subprocess.run([py, "-c", PEER_CHECK], check=True)
    return py


def data_root(given: str | None) -> Path:
    """``--data-dir``, else ``$VICLAB_DATA``, else ``../shared/data`` beside the project, else viclab's cache dir:
    the folder holding ``cifar-10-batches-py/``."""
    if given or os.environ.get("VICLAB_DATA"):
        return Path(given or os.environ["VICLAB_DATA"]).expanduser()
    shared = ROOT.parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "viclab"


def timed_lr(opt: torch.optim.Optimizer, steps: int, seconds: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``steps`` steps, then a cosine to zero over the wall-clock budget ``seconds`` (from the
    first step): each side ends its budget at a rate near zero, as a cosine schedule over a known length would,
    whatever its speed (the same on both sides)."""
    start: list[float] = []

    def factor(step: int) -> float:
        now = time.perf_counter()
        if not start:
            start.append(now)
        warm = min(1.0, (step + 1) / max(1, steps))
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, (now - start[0]) / seconds)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def timed_training(batches, step, seconds: float, batch_size: int) -> dict:
    """Run ``step(batch)`` on ``batches()``'s epochs until ``seconds`` have passed (data time included)."""
    images, steps, t0 = 0, 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for batch in batches():
            step(batch)
            images, steps = images + batch_size, steps + 1
            if time.perf_counter() - t0 >= seconds:
                break
    elapsed = time.perf_counter() - t0
    return {"images": images, "steps": steps, "seconds": elapsed, "images_per_s": images / elapsed}


def save(out: Path, encoder: torch.nn.Module, result: dict) -> dict:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, out / "encoder.safetensors")
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def viclab_worker(args, out: Path) -> dict:
    """viclab's own training pieces on uint8 CIFAR-10 held in memory (as ``viclab train`` does on the CPU)."""
    from viclab.config import get_preset
    from viclab.core.runtime import select_runtime
    from viclab.data import load_images
    from viclab.engine.loop import train_step
    from viclab.engine.vicreg import make_loss, make_views, vicreg_objective
    from viclab.models import build_vicreg_model
    from viclab.views import Augment

    cfg = get_preset("cpu")
    rt = select_runtime("cpu", "fp32")
    images = load_images("cifar10", "train", data_root(args.data_dir), cfg.augment.size).images
    torch.manual_seed(args.seed)
    model, _ = build_vicreg_model(cfg.model)
    if cfg.model.channels_last:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    sched = timed_lr(opt, args.warmup_steps, args.seconds)
    objective = vicreg_objective(model, model, make_loss(cfg), [opt], None, "")
    augment, gen = Augment(cfg.augment), torch.Generator().manual_seed(args.seed)
    b = args.batch_size

    def batches():
        perm = torch.randperm(len(images), generator=gen)
        return (images[perm[i:i + b]] for i in range(0, len(perm) - b + 1, b))  # shuffled, drop_last

    def step(x):
        train_step(objective.module, objective, make_views(x, augment, gen, cfg.model.channels_last), rt)
        sched.step()

    model.train()
    result = timed_training(batches, step, args.seconds, b)
    return save(out, model.encoder, {**result, "side": "viclab", "torch": torch.__version__,
                                     "channels_last": cfg.model.channels_last, "loss": cfg.loss.variant})


def lightly_worker(args, out: Path) -> dict:
    """The lightly stack: torchvision CIFAR10 (PIL) -> VICRegTransform -> DataLoader -> lightly's VICRegLoss."""
    import lightly
    import torchvision
    from lightly.loss import VICRegLoss
    from lightly.transforms.vicreg_transform import VICRegTransform
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(SRC))  # the same network, built by viclab's own code
    from viclab.config import get_preset
    from viclab.models import build_vicreg_model

    cfg = get_preset("cpu")
    a, lo = cfg.augment, cfg.loss
    transform = VICRegTransform(
        input_size=a.size, min_scale=a.crop_scale[0], hf_prob=a.hflip_p, vf_prob=0.0, rr_prob=0.0,
        cj_prob=a.jitter_p, cj_strength=1.0, cj_bright=a.brightness, cj_contrast=a.contrast, cj_sat=a.saturation,
        cj_hue=a.hue, random_gray_scale=a.grayscale_p, gaussian_blur=a.blur_p, sigmas=a.blur_sigma,
        solarize_prob=a.solarize_p, normalize={"mean": list(a.mean), "std": list(a.std)})

    class CIFAR10(torchvision.datasets.CIFAR10):
        # The shared copy's training batches carry placeholder file names, so their MD5s are not the publisher's;
        # viclab checks them by content. Pixels and labels are the official ones.
        def _check_integrity(self) -> bool:
            return True

    dataset = CIFAR10(str(data_root(args.data_dir)), train=True, transform=transform, download=False)
    torch.manual_seed(args.seed)
    model, _ = build_vicreg_model(cfg.model)
    if args.peer_channels_last:
        model.to(memory_format=torch.channels_last)
    # lightly halves the variance part and uses sqrt(var + eps) ("official"); viclab's preset sums both views'
    # ("spec"): doubling mu makes the weighted objective the same (up to where eps sits).
    loss_fn = VICRegLoss(lambda_param=lo.inv_weight, nu_param=lo.cov_weight, eps=lo.eps,
                         mu_param=lo.var_weight * (2 if lo.variant == "spec" else 1))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, betas=cfg.optim.betas,
                            weight_decay=cfg.optim.weight_decay)
    sched = timed_lr(opt, args.warmup_steps, args.seconds)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        generator=torch.Generator().manual_seed(args.seed))
    fmt = torch.channels_last if args.peer_channels_last else torch.contiguous_format

    def step(batch):
        (x0, x1), _ = batch
        loss = loss_fn(model(x0.contiguous(memory_format=fmt)), model(x1.contiguous(memory_format=fmt)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    model.train()
    result = timed_training(lambda: loader, step, args.seconds, args.batch_size)
    return save(out, model.encoder, {**result, "side": "lightly", "torch": torch.__version__,
                                     "torchvision": torchvision.__version__, "lightly": lightly.__version__,
                                     "channels_last": args.peer_channels_last, "workers": args.workers})


def train_side(side: str, peer_python: Path, out: Path, args) -> dict:
    """One side's training in a fresh process (same threads); its result JSON."""
    python = peer_python if side == "lightly" else Path(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": str(args.threads)}
    cmd = [str(python), __file__, "--worker", side, str(out), "--seconds", str(args.seconds),
           "--threads", str(args.threads), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
           "--warmup-steps", str(args.warmup_steps), "--seed", str(args.seed)]
    cmd += ["--data-dir", str(data_root(args.data_dir))] + (["--peer-channels-last"] if args.peer_channels_last else [])
    subprocess.run(cmd, env=env, check=True)
    return json.loads((out / "result.json").read_text())


def probe(weights: Path, data: dict) -> dict:
    """viclab's linear probe (:func:`viclab.eval.probe.linear_probe`) on a ``small_cnn`` with these weights."""
    from safetensors.torch import load_file

    from viclab.config import get_preset
    from viclab.core.metrics import binomial_interval
    from viclab.eval.probe import linear_probe
    from viclab.models import build_backbone
    from viclab.represent.encode import encode

    cfg = get_preset("cpu")
    backbone, _ = build_backbone(cfg.model.backbone)
    backbone.load_state_dict(load_file(weights))
    feats = {s: encode(backbone, d.images, cfg.augment, modality=d.modality) for s, d in data.items()}
    res = linear_probe(feats["train"], data["train"].labels, feats["test"], data["test"].labels)
    n = len(data["test"].labels)
    return {"top1": res.top1, "top1_interval": list(binomial_interval(res.top1, n)), "n_test": n,
            "n_train": len(data["train"].labels), "weight_decay": res.weight_decay, "seconds": res.seconds}


def train_and_probe(args, peer_python: Path, work: Path) -> list[dict]:
    """Every round's two trainings (order alternating), then the probe of each trained backbone."""
    runs: list[dict] = []
    for r in range(args.rounds):
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            out = work / f"{side}-{r}"
            runs.append({**train_side(side, peer_python, out, args), "round": r})
            print(f"round {r} {side}: {runs[-1]['images_per_s']:.1f} images/s", flush=True)

    from viclab.data import load_images

    data = {s: load_images("cifar10", s, data_root(args.data_dir), 32) for s in ("train", "test")}
    if args.probe_subset:
        n = args.probe_subset
        data = {"train": data["train"].subset(n), "test": data["test"].subset(max(2, n // 5))}
    for run in runs:
        run["probe"] = probe(work / f"{run['side']}-{run['round']}" / "encoder.safetensors", data)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setup", action="store_true", help="create the peer venv (if needed) and stop")
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="the peer venv (default: %(default)s)")
    ap.add_argument("--seconds", type=float, default=600.0, help="training wall-clock budget of each side")
    ap.add_argument("--rounds", type=int, default=1, help="trainings per side, the order alternating")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads of every process")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup-steps", type=int, default=50, help="linear warm-up, then a cosine over the time")
    ap.add_argument("--workers", type=int, default=0, help="lightly side's DataLoader workers (0 or 1)")
    ap.add_argument("--peer-channels-last", action="store_true",
                    help="lightly side in channels-last as viclab's preset (default: as a lightly user would, NCHW)")
    ap.add_argument("--probe-subset", type=int, default=0, help="smoke tests: probe on the first N train / N//5 "
                    "test images")
    ap.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (default: $VICLAB_DATA, ../shared/data)")
    ap.add_argument("--work", type=Path, help="where the trained backbones go (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worker", nargs=2, metavar=("SIDE", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        side, out = args.worker
        print(json.dumps((viclab_worker if side == "viclab" else lightly_worker)(args, Path(out))))
        return
    if args.setup:
        setup(args.venv)
        return
    peer_python = args.venv / "bin" / "python"
    if not peer_ready(peer_python):
        sys.exit(f"the peer venv {args.venv} is missing or incomplete: run python {__file__} --setup first")
    with tempfile.TemporaryDirectory(prefix="viclab-peers-") as tmp:
        runs = train_and_probe(args, peer_python, args.work or Path(tmp))
    print(f"\n{'side':8s} {'round':>5s} {'images/s':>9s} {'images':>8s}  probe top-1 [95% CI]")
    for run in runs:
        p = run["probe"]
        lo, hi = p["top1_interval"]
        print(f"{run['side']:8s} {run['round']:5d} {run['images_per_s']:9.1f} {run['images']:8d}  "
              f"{100 * p['top1']:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]")
    summary = {}
    for side in SIDES:
        mine = [x for x in runs if x["side"] == side]
        summary[side] = {"median_images_per_s": statistics.median(x["images_per_s"] for x in mine),
                         "median_probe_top1": statistics.median(x["probe"]["top1"] for x in mine)}
        print(f"{side:8s}   all {summary[side]['median_images_per_s']:9.1f}  (median over {len(mine)} rounds)")
    ratio = summary["viclab"]["median_images_per_s"] / summary["lightly"]["median_images_per_s"]
    print(f"viclab / lightly images/s: {ratio:.2f}")
    write_result("peers", {"seconds": args.seconds, "rounds": args.rounds, "threads": args.threads,
                           "batch_size": args.batch_size, "warmup_steps": args.warmup_steps,
                           "workers": args.workers, "peer_channels_last": args.peer_channels_last,
                           "probe_subset": args.probe_subset or None, "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
