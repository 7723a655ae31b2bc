"""Scoring precision of fitted detectors: fp32 against bf16 autocast, time and AUROC side by side.

    python benchmarks/detect_precision.py [DETECTOR ...] [--images 2000] [--repeats 3]

Default detectors: one-class cat's ``vicreg_terms`` and ``mahalanobis`` from
``benchmarks/detection.py one-class`` (its ``--work`` folder). Writes ``results/detect_precision.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, write_result  # noqa: E402

from viclab.core.metrics import detection_metrics  # noqa: E402
from viclab.core.runtime import select_runtime  # noqa: E402
from viclab.detect import load_detector, load_test  # noqa: E402


def main() -> None:
    work = Path(os.environ.get("VICLAB_BENCH_WORK", "/tmp/viclab-detect-bench")) / "one_class" / "class-3"
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("detectors", nargs="*", default=[str(work / "vicreg_terms"), str(work / "mahalanobis")])
    ap.add_argument("--images", type=int, default=2000, help="test images scored (the first N)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rows = []
    for folder in args.detectors:
        row = {"detector": folder}
        for precision in ("fp32", "bf16"):
            det, _ = load_detector(folder, select_runtime("cpu", precision))
            test = load_test(det.cfg.data, sound=det.cfg.recipe.sound)
            x, y = test.data.images[:args.images], test.labels[:args.images]
            seconds, _ = median_time(lambda: det.score(x), args.repeats)
            scores = det.score(x)
            row[precision] = {"seconds": seconds, "auroc": {k: detection_metrics(y, v)["auroc"]
                                                            for k, v in scores.items()}}
        row["speedup"] = row["fp32"]["seconds"] / row["bf16"]["seconds"]
        row["max_auroc_change"] = max(abs(row["fp32"]["auroc"][k] - row["bf16"]["auroc"][k])
                                      for k in row["fp32"]["auroc"])
        rows.append(row)
        print(f"{Path(folder).name}: fp32 {row['fp32']['seconds']:.2f}s, bf16 {row['bf16']['seconds']:.2f}s "
              f"({row['speedup']:.2f}x); largest AUROC change {row['max_auroc_change']:.4f}")
    write_result("detect_precision", {"images": args.images, "repeats": args.repeats, "rows": rows,
                                      "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
