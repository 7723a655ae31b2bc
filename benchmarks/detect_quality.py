"""Issue 27: one-class CIFAR-10 with the detectors that beat their untrained floor, on a stated CPU budget.

    python benchmarks/detect_quality.py [--classes cat,...] [--epochs 4] [--preset rotation] [--set ...]
    python benchmarks/detect_quality.py --epochs 2 --floors-from results/detect_quality_rotation_e4.json
    python benchmarks/detect_quality.py --curve     # the budget curve of every results/detect_quality_*_e*.json
    python benchmarks/detect_quality.py --preset cpu --set train.objective=shift --trained vicreg_terms --no-floors \
        --name vicreg_terms_shift --epochs 2 --classes airplane,cat   # VICReg's quantities on shift-aware VICReg

Per class c (resumable: a class already in --work/rows.jsonl with this setup is reused): the 5,000 training
images of c are normal, all 10,000 test images are tested (c normal, the other nine anomalous). Fits

- ``shift``: the shift detector on a network trained with ``--preset`` (``rotation``: the rotation objective;
  ``cpu``: shift-aware VICReg) for ``--epochs``; its parts ``shift:knn`` and ``shift:rotation`` reported too;
- ``knn`` on that network's encoder, every stage pooled (``detect.layers=all``);
- the untrained floors, knn and mahalanobis on a random-init encoder of the same backbone in each feature variant
  (the output; every stage; mean-shifted), so the floor is the strongest untrained baseline, not a weak one.

The floors do not depend on ``--epochs``: ``--floors-from`` copies them, per class, from an earlier result of the
same preset instead of fitting them again. Each AUROC with its 95% bootstrap interval (2,000 resamples of the test
set). Scores are kept in --work.
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
    "shift": ("shift", "own", []),
    "knn, all stages": ("knn", "trained", ["detect.layers=all"]),  # on the shift detector's network
    # not in the budget table: VICReg's own per-image quantities, e.g. on shift-aware VICReg (--preset cpu
    # --set train.objective=shift) against plain VICReg (--preset cpu)
    "vicreg_terms": ("vicreg_terms", "own", []),
}
BUDGET_TABLE = ("shift", "knn, all stages")


def setup(args) -> dict:
    own = {"preset": args.preset, "epochs": args.epochs, "k": args.k, "overrides": args.set,
           "floors_from": args.floors_from}
    if list(args.trained) != list(BUDGET_TABLE) or args.no_floors:  # (the budget runs' rows predate these)
        own.update(trained=args.trained, floors=not args.no_floors)
    return own


def copied_floors(path: str | None, preset: str) -> dict:
    """Per class, the floors' metrics of an earlier result ``path`` of the same preset (empty when no path)."""
    if not path:
        return {}
    r = json.loads(Path(path).read_text())
    if r["setup"]["preset"] != preset or r["setup"]["overrides"]:
        raise SystemExit(f"{path}: floors were measured with another setup ({r['setup']}); fit them instead")
    return {row["class"]: {n: m for n, m in row["metrics"].items() if n.startswith("random")} for row in r["rows"]}


def fit_class(args, c: str, work: Path, floors: dict) -> dict:
    """Every detector on class ``c``: metrics, intervals, fit and score seconds; the scores saved beside."""
    base = resolve("detect", args.preset, overrides=_base_overrides(args, c))
    test = load_test(base.data)
    rows, scores = dict(floors.get(c, {})), {}
    fitted = {n: TRAINED[n] for n in args.trained}
    if c not in floors and not args.no_floors:
        fitted.update(FLOORS)
    for name, (detector, encoder, extra) in fitted.items():
        enc = {"own": None, "trained": str(work / "shift" / "train"),
               "random": f"random:{base.recipe.model.backbone}"}[encoder]
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
    ap.add_argument("--floors-from", default=None, metavar="RESULT.json",
                    help="copy the untrained floors per class from this earlier result instead of fitting them")
    ap.add_argument("--trained", nargs="*", default=list(BUDGET_TABLE), choices=list(TRAINED),
                    help="the trained detectors (knn, all stages: on the shift detector's network, after it)")
    ap.add_argument("--no-floors", action="store_true", help="fit no untrained floor")
    ap.add_argument("--name", default=None, help="result and work folder name (default: from --preset, --epochs)")
    ap.add_argument("--curve", action="store_true", help="draw the budget curve of the results written so far")
    args = ap.parse_args()
    if args.curve:
        return curve()
    args.name = args.name or f"detect_quality_{args.preset}_e{args.epochs}"
    work = Path(args.work) / (f"{args.preset}-{args.epochs}" if args.name.startswith("detect_quality_") else args.name)
    path = work / "rows.jsonl"
    done = done_rows(path, setup(args))
    classes = args.classes.split(",")
    floors = copied_floors(args.floors_from, args.preset)
    for c in classes:
        if c in done:
            continue
        t0 = time.perf_counter()
        metrics = fit_class(args, c, work / c, floors)
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
                 "fit_seconds_median": float(np.median([r["metrics"][n]["fit_seconds"] for r in rows])),
                 "network_seconds_median": float(np.median([r["metrics"][n]["network_seconds"] for r in rows]))}
             for n in names}
    floors = [n for n in names if n.startswith("random")]
    trained = [n for n in names if not n.startswith("random")]
    for n in names:
        t = table[n]
        print(f"{n:>40}: mean AUROC {100 * t['mean']:.1f}  per class "
              + " ".join(f"{100 * a:.1f}" for a in t["per_class"]))
    verdict = None
    if floors:
        floor = max(floors, key=lambda n: table[n]["mean"])
        best = max(trained, key=lambda n: table[n]["mean"])
        above = [bool(a > f) for a, f in zip(table[best]["per_class"], table[floor]["per_class"])]
        above_interval = [bool(lo > f) for (lo, _), f in zip(table[best]["per_class_95"], table[floor]["per_class"])]
        verdict = {"best_trained": best, "strongest_floor": floor, "classes_above": above,
                   "classes_above_interval": above_interval}
        print(f"best trained: {best} {100 * table[best]['mean']:.1f}; strongest floor: {floor} "
              f"{100 * table[floor]['mean']:.1f}; above it on {sum(above)}/{len(rows)} classes "
              f"({sum(above_interval)} with the floor outside the 95% interval)")
    write_result(args.name, {
        "setup": setup(args), "classes": [r["class"] for r in rows], "table": table, "rows": rows,
        "verdict": verdict,
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
        network = r["table"]["shift"]["fit_seconds_median"]  # the trained encoder's cost, paid by all that use it
        for name, t in r["table"].items():
            if name.startswith("random") and name in points:
                continue  # a floor is the same in every file (copied or refitted): one point
            extra = 0.0 if name.startswith(("random", "shift")) else network
            points.setdefault(name, []).append(((t["fit_seconds_median"] + extra) / 60, t["mean"]))
    series = [(n, np.array([m for m, _ in p]), np.array([a for _, a in p])) for n, p in points.items()]
    figures.lines_png([("one-class CIFAR-10, 2 CPU cores: mean AUROC against fitting time per class",
                        "CPU minutes of fitting per class", "mean AUROC", series)], RESULTS / "detect_budget.png")
    write_result("detect_budget", {"points": {n: [{"minutes": m, "mean_auroc": a} for m, a in p]
                                              for n, p in points.items()}})
    for n, p in points.items():
        print(f"{n:>40}: " + "  ".join(f"{m:.1f} min {100 * a:.1f}" for m, a in sorted(p)))


if __name__ == "__main__":
    main()
