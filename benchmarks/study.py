"""The whole `cpu` study end to end: wall time, peak memory, time per stage, headline numbers.

Runs ``viclab study --preset cpu`` in a fresh subprocess with an empty feature cache (so
nothing is reused from earlier runs), then reads the study's ``results.json``.
``--from DIR`` only summarises a study folder that already ran (its stage times are the
ones recorded when each stage was computed).

    python benchmarks/study.py [--out /tmp/study-bench] [--from DIR]

Writes ``benchmarks/results/study_cpu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="study folder (default: a temporary one)")
    ap.add_argument("--from", dest="existing", help="summarise this finished study folder instead of running one")
    args = ap.parse_args()
    payload: dict = {}
    if args.existing:
        study = Path(args.existing)
        payload["ran_here"] = False  # stage times only: the folder may have been run in several invocations
    else:
        study = Path(args.out or tempfile.mkdtemp(prefix="viclab-study-")) / "cpu"
        if study.exists():
            shutil.rmtree(study)
        cache = tempfile.mkdtemp(prefix="viclab-cache-")
        env = {**os.environ, "VICLAB_CACHE": cache}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "viclab", "study", "--preset", "cpu", "--out", str(study),
                        "--no-progress"], env=env, check=True)
        payload.update(ran_here=True, wall_seconds=time.perf_counter() - t0,
                       peak_rss_gib=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20)
        shutil.rmtree(cache, ignore_errors=True)
    results = json.loads((study / "results.json").read_text())
    payload.update(study=str(study), stage_seconds=results["seconds"]["stages"],
                   total_stage_seconds=results["seconds"]["total"], data=results["data"],
                   table=[{k: r[k] for k in ("name", "linear_top1", "knn_top1", "auroc", "silhouette")}
                          for r in results["table"]])
    for name, s in payload["stage_seconds"].items():
        print(f"{name:>20}: {s:7.1f} s")
    print(f"{'all stages':>20}: {payload['total_stage_seconds']:7.1f} s"
          + (f" (wall {payload['wall_seconds']:.1f} s, peak RSS {payload['peak_rss_gib']:.2f} GiB)"
             if payload["ran_here"] else ""))
    write_result("study_cpu", payload)


if __name__ == "__main__":
    main()
