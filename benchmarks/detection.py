"""Anomaly detection on real images (spec §4, §5), every detector, on the CPU.

    python benchmarks/detection.py one-class [--classes 0,1,...] [--epochs 10] [--ae-epochs 20] [--views 8]
    python benchmarks/detection.py cases [--epochs 5] [--all-epochs 1]
    ... [--set section.field=value ...]   (e.g. a GPU recipe: --set model.backbone=resnet18_cifar)

``one-class``: one-class CIFAR-10 (spec §5). Per class c: VICReg trained on the 5,000 training
images of c only (the ``cpu`` recipe for ``--epochs``), ``vicreg_terms`` on it (all four
quantities), ``knn`` and ``mahalanobis`` on its encoder, the ``autoencoder``, and ``knn`` on a
random-init encoder as the floor; each tested on all 10,000 test images (c normal, the other nine
anomalous). Writes ``results/one_class_cifar10.json`` (a class already in ``--work`` is reused).

``cases``: CIFAR-10 normal (all classes) against MNIST and against Fashion-MNIST test images; the
journal's cases: cat and dog normal against the vehicles, solid-colour images normal against
natural (CIFAR-10 test) images, each with VICReg's default, crop-only and crop-only-unnormalised
views. Writes ``results/detect_cases.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import done_rows, write_result  # noqa: E402

from viclab.config import resolve, view_overrides  # noqa: E402
from viclab.core.context import QUIET  # noqa: E402
from viclab.detect import compare, load_test  # noqa: E402

ANCHORS = {"SimCLR features (ResNet-18)": 87.9, "rotation+translation": 90.0, "CSI": 94.3}


def base_config(args, *overrides: str, views: str | None = None):
    return resolve("detect", overrides=[*view_overrides(views), "data.holdout=0", f"train.epochs={args.epochs}",
                                        f"detect.views={args.views}", f"autoencoder.epochs={args.ae_epochs}",
                                        *overrides, *args.set])


def setup(args) -> dict:
    return {"epochs": args.epochs, "ae_epochs": args.ae_epochs, "views": args.views, "recipe": "cpu preset",
            **({"overrides": args.set} if args.set else {})}


def one_class(args) -> None:
    """Per class (resumable: a class already in --work/classes.jsonl with this setup is reused)."""
    work = Path(args.work) / "one_class"
    classes = args.classes.split(",")
    path = work / "classes.jsonl"
    done = done_rows(path, setup(args))
    for c in classes:
        if c in done:
            continue
        result = compare.one_class(base_config(args), [c], work, ctx=QUIET)
        row = {**result["per_class"][0], "setup": setup(args)}
        work.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done[c] = row
        print(f"class {c}: " + "  ".join(f"{k} {v['auroc']:.3f}" for k, v in row["metrics"].items())
              + f"  ({row['seconds']:.0f}s)", flush=True)
    rows = [done[c] for c in classes]
    table = {n: {"per_class": [r["metrics"][n]["auroc"] for r in rows],
                 "mean": float(np.mean([r["metrics"][n]["auroc"] for r in rows]))} for n in rows[0]["metrics"]}
    for n, t in table.items():
        print(f"{n:>28}: mean AUROC {100 * t['mean']:.1f}  per class "
              + " ".join(f"{100 * a:.1f}" for a in t["per_class"]))
    write_result("one_class_cifar10", {
        "setup": setup(args), "classes": classes, "table": table, "rows": rows,
        "seconds_per_class": {"median": float(np.median([r["seconds"] for r in rows])),
                              "each": [r["seconds"] for r in rows]},
        "anchors_mean_auroc": ANCHORS, "command": " ".join(sys.argv)})


def solid_colours(folder: Path, n: int, seed: int = 0) -> Path:
    """``n`` 32x32 images of one uniformly drawn colour each, as PNG files."""
    from PIL import Image

    if folder.is_dir() and len(list(folder.glob("*.png"))) == n:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, colour in enumerate(rng.integers(0, 256, (n, 3), dtype=np.uint8)):
        Image.fromarray(np.broadcast_to(colour, (32, 32, 3)).copy()).save(folder / f"{i:05d}.png")
    return folder


def _line(key: str, metrics: dict) -> None:
    print(f"{key}: " + "  ".join(f"{k} {v['auroc']:.3f}" for k, v in metrics.items()), flush=True)


def cases(args) -> None:
    work = Path(args.work) / "cases"
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    # CIFAR-10 normal (every class) against MNIST and Fashion-MNIST test images.
    cfg = base_config(args, f"train.epochs={args.all_epochs}")
    folders = compare.fit_all(cfg, work / "cifar_all", ctx=QUIET)
    for odd in ("mnist", "fashion_mnist"):
        test = load_test(cfg.data, anomalies=odd)
        results[f"cifar10 vs {odd}"] = compare.evaluate(folders, test, QUIET)["metrics"]
        _line(f"cifar10 vs {odd}", results[f"cifar10 vs {odd}"])
    # The journal's cases, with each view recipe of VICReg.
    solid = solid_colours(work / "images" / "solid", 5000)
    solid_test = solid_colours(work / "images" / "solid_test", 1000, seed=1)
    journal = {
        "cat+dog vs vehicles": ["data.normal_classes=cat,dog", "data.anomaly_classes=airplane,automobile,ship,truck"],
        "solid colours vs natural images": [f"data.normal={solid}", "data.anomalies=cifar10",
                                            f"data.normal_test={solid_test}"],
    }
    for case, data in journal.items():
        for views in ("default", "crop", "crop_raw"):
            cfg = base_config(args, *data, views=views)
            wanted = None if views == "default" else ("vicreg_terms", "knn")
            folders = compare.fit_all(cfg, work / case.split()[0].replace("+", "_") / views, ctx=QUIET,
                                      detectors=wanted)
            key = f"{case}, {views} views"
            results[key] = compare.evaluate(folders, ctx=QUIET)["metrics"]
            _line(key, results[key])
    write_result("detect_cases", {"setup": {**setup(args), "all_epochs": args.all_epochs}, "results": results,
                                  "seconds": time.perf_counter() - t0, "command": " ".join(sys.argv)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=("one-class", "cases"))
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--epochs", type=int, default=10, help="VICReg epochs on the normal images")
    ap.add_argument("--all-epochs", type=int, default=1, help="cases: VICReg epochs on all of CIFAR-10")
    ap.add_argument("--ae-epochs", type=int, default=20)
    ap.add_argument("--views", type=int, default=8, help="vicreg_terms: views per image")
    ap.add_argument("--set", nargs="*", default=[], metavar="section.field=value",
                    help="recipe and detector overrides, e.g. model.backbone=resnet18_cifar train.batch_size=256")
    ap.add_argument("--work", default=os.environ.get("VICLAB_BENCH_WORK", "/tmp/viclab-detect-bench"))
    args = ap.parse_args()
    (one_class if args.what == "one-class" else cases)(args)


if __name__ == "__main__":
    main()
