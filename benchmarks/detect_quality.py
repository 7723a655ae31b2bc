"""Issue 27: one-class CIFAR-10 with the detectors that beat their untrained floor, on a stated CPU budget.

    python benchmarks/detect_quality.py [--classes cat,...] [--epochs 4] [--preset rotation] [--set ...]
    python benchmarks/detect_quality.py --curve     # the budget curve of every results/detect_quality_*_e*.json

Per class c (resumable: a class already in --work/rows.jsonl with this setup is reused): the 5,000 training
images of c are normal, all 10,000 test images are tested (c normal, the other nine anomalous). Fits

- ``shift``: the shift detector on a network trained with ``--preset`` (``rotation``: the rotation objective;
  ``cpu``: shift-aware VICReg) for ``--epochs``; its parts ``shift:knn`` and ``shift:rotation`` reported too;
- ``knn`` on that network's encoder, every stage pooled (``detect.layers=all``);
- the untrained floors, knn and mahalanobis on a random-init encoder of the same backbone in each feature variant
  (the output; every stage; mean-shifted), so the floor is the strongest untrained baseline, not a weak one.

Each AUROC with its 95% bootstrap interval (2,000 resamples of the test set). Scores are kept in --work.
Writes ``results/detect_quality_<preset>_e<epochs>.json``; ``--curve`` draws mean AUROC against the median fitting
minutes per class of every such file (``results/detect_budget.png`` and ``.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import done_rows, write_result  # noqa: E402

from viclab.config import resolve  # noqa: E402
from viclab.core.context import QUIET  # noqa: E402
from viclab.core.metrics import auroc_interval, detection_metrics  # noqa: E402
from viclab.detect import fit_detector, load_detector, load_test  # noqa: E402

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# name -> (detector, encoder: "trained" | "random", overrides)
FLOORS = {
    "random knn": ("knn", "random", []),
    "random knn, all stages": ("knn", "random", ["detect.layers=all"]),
    "random knn, all stages mean-shifted": ("knn", "random", ["detect.layers=all", "detect.mean_shift=true"]),
    "random mahalanobis": ("mahalanobis", "random", []),
    "random mahalanobis, all stages": ("mahalanobis", "random", ["detect.layers=all"]),
}
TRAINED = {
    "shift": ("shift", "trained", []),
    "knn, all stages": ("knn", "trained", ["detect.layers=all"]),
}


def setup(args) -> dict:
    return {"preset": args.preset, "epochs": args.epochs, "k": args.k, "overrides": args.set}


def fit_class(args, c: str, work: Path) -> dict:
    """Every detector on class ``c``: metrics, intervals, fit and score seconds; the scores saved beside."""
    base = resolve("detect", args.preset, overrides=_base_overrides(args, c))
    test = load_test(base.data)
    rows, scores = {}, {}
    for name, (detector, encoder, extra) in {**TRAINED, **FLOORS}.items():
        enc = (None if detector == "shift" else str(work / "shift" / "train")) if encoder == "trained" else \
            f"random:{base.recipe.model.backbone}"
        cfg = resolve("detect", args.preset, overrides=[*_base_overrides(args, c), f"detect.detector={detector}",
                                                       *extra])
        cfg = dataclasses.replace(cfg, encoder=enc)
        folder = work / name.replace(" ", "_").replace(",", "")
        summary = fit_detector(cfg, folder, QUIET)
        det, _ = load_detector(folder)
        t1 = time.perf_counter()
        s = det.score(test.data.images, QUIET)
        t2 = time.perf_counter()
        for q in det.quantities:
            label = name if q == "score" else f"{name}:{q}"
            lo, hi = auroc_interval(test.labels, s[q])
            rows[label] = {**detection_metrics(test.labels, s[q]), "auroc_95": [lo, hi],
                           "fit_seconds": summary["seconds"]["total"],
                           "network_seconds": summary["seconds"]["network"], "score_seconds": t2 - t1}
            scores[label] = s[q]
        print(f"  {c} {name}: " + "  ".join(f"{q} {rows[name if q == 'score' else f'{name}:{q}']['auroc']:.3f}"
                                            for q in det.quantities), flush=True)
    np.savez_compressed(work / "scores.npz", labels=test.labels, **{k.replace(" ", "_"): v for k, v in scores.items()})
    return rows


def _base_overrides(args, c: str) -> list[str]:
    return [f"data.normal_classes={c}", "data.holdout=0", f"train.epochs={args.epochs}", f"detect.k={args.k}",
            *args.set]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", default=",".join(CLASSES))
    ap.add_argument("--preset", default="rotation")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("-k", type=int, default=2)
    ap.add_argument("--set", nargs="*", default=[], metavar="section.field=value")
    ap.add_argument("--work", default=os.environ.get("VICLAB_BENCH_WORK", "/tmp/viclab-detect-quality"))
    ap.add_argument("--curve", action="store_true", help="draw the budget curve of the results written so far")
    args = ap.parse_args()
    if args.curve:
        return curve()
    work = Path(args.work) / f"{args.preset}-{args.epochs}"
    path = work / "rows.jsonl"
    done = done_rows(path, setup(args))
    classes = args.classes.split(",")
    for c in classes:
        if c in done:
            continue
        t0 = time.perf_counter()
        metrics = fit_class(args, c, work / c)
        row = {"class": c, "metrics": metrics, "seconds": time.perf_counter() - t0, "setup": setup(args)}
        work.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        done[c] = row
        print(f"class {c} done in {row['seconds']:.0f}s", flush=True)
    summarise(args, [done[c] for c in classes])


def summarise(args, rows: list[dict]) -> None:
    names = list(rows[0]["metrics"])
    table = {n: {"per_class": [r["metrics"][n]["auroc"] for r in rows],
                 "per_class_95": [r["metrics"][n]["auroc_95"] for r in rows],
                 "mean": float(np.mean([r["metrics"][n]["auroc"] for r in rows])),
                 "mean_pauc": float(np.mean([r["metrics"][n]["pauc"] for r in rows])),
                 "fit_seconds_median": float(np.median([r["metrics"][n]["fit_seconds"] for r in rows]))}
             for n in names}
    floors = [n for n in names if n.startswith("random")]
    trained = [n for n in names if not n.startswith("random")]
    floor = max(floors, key=lambda n: table[n]["mean"])
    best = max(trained, key=lambda n: table[n]["mean"])
    above = [bool(a > f) for a, f in zip(table[best]["per_class"], table[floor]["per_class"])]
    above_interval = [bool(lo > f) for (lo, _), f in zip(table[best]["per_class_95"], table[floor]["per_class"])]
    for n in names:
        t = table[n]
        print(f"{n:>40}: mean AUROC {100 * t['mean']:.1f}  per class "
              + " ".join(f"{100 * a:.1f}" for a in t["per_class"]))
    print(f"best trained: {best} {100 * table[best]['mean']:.1f}; strongest floor: {floor} "
          f"{100 * table[floor]['mean']:.1f}; above it on {sum(above)}/10 classes "
          f"({sum(above_interval)} with the floor outside the 95% interval)")
    write_result(f"detect_quality_{args.preset}_e{args.epochs}", {
        "setup": setup(args), "classes": [r["class"] for r in rows], "table": table, "rows": rows,
        "verdict": {"best_trained": best, "strongest_floor": floor, "classes_above": above,
                    "classes_above_interval": above_interval},
        "seconds_per_class": {"median": float(np.median([r["seconds"] for r in rows])),
                              "each": [r["seconds"] for r in rows]},
        "command": " ".join(sys.argv)})


def curve() -> None:
    """Mean AUROC against the median CPU minutes of fitting per class, per detector, over the budgets measured."""
    from common import RESULTS

    from viclab.plot import figures

    points: dict[str, list[tuple[float, float]]] = {}
    for path in sorted(RESULTS.glob("detect_quality_*_e*.json")):
        r = json.loads(path.read_text())
        for name, t in r["table"].items():
            points.setdefault(name, []).append((t["fit_seconds_median"] / 60, t["mean"]))
    series = [(n, np.array([m for m, _ in p]), np.array([a for _, a in p])) for n, p in points.items()]
    figures.budget_png(series, "one-class CIFAR-10, 2 CPU cores: mean AUROC against fitting time per class",
                       RESULTS / "detect_budget.png")
    write_result("detect_budget", {"points": {n: [{"minutes": m, "mean_auroc": a} for m, a in p]
                                              for n, p in points.items()}})
    for n, p in points.items():
        print(f"{n:>40}: " + "  ".join(f"{m:.1f} min {100 * a:.1f}" for m, a in sorted(p)))


if __name__ == "__main__":
    main()
