"""The ViT backbone on the CPU (spec §4): VICReg at equal training time against small_cnn, VICReg's
per-batch terms as anomaly signals at several batch sizes, and image-folder decoding.

    python benchmarks/vit.py train   [--seconds 600] [--backbones vit_tiny,small_cnn]
    python benchmarks/vit.py terms   [--epochs 1] [--batch-sizes 8,16,64] [--batches 40]
    python benchmarks/vit.py decode  [--images 3000] [--size 64]

``train``: each backbone with its preset (``vit`` for the ViTs, ``cpu`` for small_cnn) trained on
CIFAR-10 for the same wall-clock budget: its throughput is measured on a short run first, then the
number of training images (``data.subset``, one epoch if less than the set) is chosen to fill
``--seconds``; then a linear probe on all 50,000 training and 10,000 test representations (top-1,
top-5). Writes ``results/vit_vs_small_cnn.json``.

``terms``: a ``vicreg_terms`` detector with a ``vit_tiny`` encoder trained on cat and dog (the
journal's case: vehicles are the anomalies), then spec §1's three terms of ``--batches`` batches
of held-out normal and of anomalous test images at each batch size, and how well each term tells
an anomalous batch from a normal one (AUROC over batches). Writes ``results/vit_batch_terms.json``.

``decode``: images per second of decoding an image folder of JPEGs of mixed sizes into the uint8
cache, in threads against one thread, and of reading the cache. Writes ``results/folder_decode.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from viclab.config import resolve  # noqa: E402

PRESET = {"vit_tiny": "vit", "vit_small": "vit", "small_cnn": "cpu"}


def _quiet(_line: str) -> None:
    pass


def train(args) -> None:
    from viclab.core.context import Context
    from viclab.engine import train as train_run
    from viclab.engine.checkpoint import load_checkpoint
    from viclab.eval.tasks import run_probe
    from viclab.models import build_backbone

    work = Path(args.work) / "train"
    # Rows of other backbones are kept (each with its budget): one backbone can be re-run, e.g. given
    # the seconds another one actually trained.
    earlier = RESULTS / "vit_vs_small_cnn.json"
    rows = json.loads(earlier.read_text())["rows"] if earlier.exists() else {}
    for backbone in args.backbones.split(","):
        base = [f"model.backbone={backbone}", *args.set]
        # Throughput from a short run (its first steps include warm-up, so it errs on the slow side).
        probe_cfg = resolve("train", PRESET[backbone], overrides=["train.epochs=1", f"data.subset={args.calib}",
                                                                "train.eval_test=false", *base])
        calib = train_run(probe_cfg, work / f"{backbone}-calib", ctx=Context(progress=False, echo=_quiet)).run_dir
        # the engine's own training time (in the checkpoint), without loading the data and building the model
        rate = args.calib / load_checkpoint(calib / "checkpoint.pt", keys=("seconds",))["seconds"]
        base_cfg = resolve("train", PRESET[backbone], overrides=base)
        budget = int(rate * args.seconds)  # images one process sees in the budget
        epochs = max(1, min(base_cfg.train.epochs, math.ceil(budget / 50_000)))
        subset = min(50_000, budget // epochs)
        # The warm-up keeps its share of the run (a fifth, as the cpu preset's 1 of 5 epochs).
        cfg = resolve("train", PRESET[backbone], overrides=[f"train.epochs={epochs}", f"data.subset={subset}",
                                                          f"optim.warmup_epochs={0.2 * epochs}",
                                                          "train.eval_test=false", *base])
        t0 = time.perf_counter()
        result = train_run(cfg, work / backbone, ctx=Context(progress=False, echo=_quiet))
        seconds = time.perf_counter() - t0
        probe = run_probe(result.run_dir, ctx=Context(progress=False))
        module, dim = build_backbone(backbone)
        rows[backbone] = {
            "preset": PRESET[backbone], "params": sum(p.numel() for p in module.parameters()), "dim": dim,
            "seconds_budget": args.seconds, "command": " ".join(sys.argv),
            "calibration_images_per_second": rate, "epochs": epochs, "subset": subset,
            "train_seconds": seconds, "images_seen": epochs * subset,
            "linear_top1": probe["linear"]["top1"], "linear_top5": probe["linear"]["top5"],
            "knn_top1": probe["knn"]["top1"], "probe_seconds": probe["linear"]["seconds"]}
        print(f"{backbone}: {epochs} epoch(s) of {subset} images in {seconds:.0f}s -> linear top-1 "
              f"{100 * probe['linear']['top1']:.1f}% top-5 {100 * probe['linear']['top5']:.1f}%", flush=True)
    write_result("vit_vs_small_cnn", {"rows": rows})


def terms(args) -> None:
    from sklearn.metrics import roc_auc_score

    from viclab.core.context import Context
    from viclab.detect import fit_detector, load_detector, load_test
    from viclab.detect.tasks import batch_terms

    cfg = resolve("detect", "vit", overrides=["detect.detector=vicreg_terms", "data.normal_classes=cat,dog",
                                              "data.anomaly_classes=airplane,automobile,ship,truck",
                                              f"train.epochs={args.epochs}", f"optim.warmup_epochs={0.2 * args.epochs}",
                                              "model.backbone=vit_tiny", *args.set])
    folder = Path(args.work) / "terms" / "vit_tiny"
    t0 = time.perf_counter()
    fit_detector(cfg, folder, ctx=Context(progress=False))
    fit_seconds = time.perf_counter() - t0
    det, _ = load_detector(folder)
    test = load_test(cfg.data)
    rng = np.random.default_rng(0)
    pools = {0: np.flatnonzero(test.labels == 0), 1: np.flatnonzero(test.labels == 1)}
    table = {}
    for b in (int(s) for s in args.batch_sizes.split(",")):
        batches, truth = [], []
        for label, pool in pools.items():
            for _ in range(args.batches):  # each batch drawn without replacement; batches may share images
                batches.append(test.data.images[torch.from_numpy(rng.choice(pool, b, replace=False))])
                truth.append(label)
        t0 = time.perf_counter()
        values = batch_terms(det, batches, seed=0)
        seconds = time.perf_counter() - t0
        truth = np.array(truth)
        table[b] = {k: {"normal_mean": float(v[truth == 0].mean()), "anomalous_mean": float(v[truth == 1].mean()),
                        "normal_std": float(v[truth == 0].std()), "anomalous_std": float(v[truth == 1].std()),
                        "auroc": float(roc_auc_score(truth, v))} for k, v in values.items()}
        table[b]["seconds"] = seconds
        print(f"batch {b}: " + "  ".join(f"{k} AUROC {table[b][k]['auroc']:.3f}" for k in values), flush=True)
    write_result("vit_batch_terms", {
        "setup": {"epochs": args.epochs, "batches_per_kind": args.batches, "normal": "cat,dog",
                  "anomalous": "airplane,automobile,ship,truck", "overrides": args.set},
        "n_normal_test": int(len(pools[0])), "n_anomalous_test": int(len(pools[1])),
        "fit_seconds": fit_seconds, "table": table, "command": " ".join(sys.argv)})


def decode(args) -> None:
    from PIL import Image

    from viclab.data import folder as folder_mod

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VICLAB_CACHE"] = str(Path(tmp) / "cache")  # not the user's cache
        root = Path(tmp) / "photos"
        rng = np.random.default_rng(0)
        for i in range(args.images):
            h, w = (int(v) for v in rng.integers(100, 400, 2))
            (root / f"c{i % 10}").mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)  # smooth content, realistic JPEGs
            Image.fromarray(pixels).resize((w, h), Image.Resampling.BILINEAR).save(root / f"c{i % 10}" / f"{i}.jpg",
                                                                                   quality=90)
        files = [(f, 0) for f in sorted(root.rglob("*.jpg"))]
        rates = {}
        for name, threads in (("1 thread", 1), ("threads", None)):
            t0 = time.perf_counter()
            folder_mod.decode_files(files, root, args.size, ("x",), use_cache=False, threads=threads)
            rates[name] = args.images / (time.perf_counter() - t0)
        folder_mod.decode_files(files, root, args.size, ("x",))  # fills the cache
        t0 = time.perf_counter()
        folder_mod.decode_files(files, root, args.size, ("x",))
        rates["cached (hash + read)"] = args.images / (time.perf_counter() - t0)
    for k, v in rates.items():
        print(f"{k}: {v:.0f} images/s")
    write_result("folder_decode", {"images": args.images, "size": args.size, "images_per_second": rates,
                                   "speedup_threads": rates["threads"] / rates["1 thread"],
                                   "command": " ".join(sys.argv)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("train", "terms", "decode"))
    ap.add_argument("--seconds", type=float, default=600.0, help="train: the training budget per backbone")
    ap.add_argument("--calib", type=int, default=2048, help="train: images of the throughput run")
    ap.add_argument("--backbones", default="vit_tiny,small_cnn")
    ap.add_argument("--epochs", type=int, default=1, help="terms: VICReg epochs on cat and dog")
    ap.add_argument("--batch-sizes", default="8,16,64")
    ap.add_argument("--batches", type=int, default=40, help="terms: batches of each kind per batch size")
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--set", nargs="*", default=[], metavar="section.field=value")
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "viclab-vit"))
    args = ap.parse_args()
    {"train": train, "terms": terms, "decode": decode}[args.what](args)


if __name__ == "__main__":
    main()
