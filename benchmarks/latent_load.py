"""Latent optimisation on a quiet and on a loaded machine, with 1 and 2 intra-op threads (issue 14).

The study's latent-graph stage once took 17x its quiet time while other processes kept the CPU
busy, against 1.7-2.2x for the trainings. This times the stage's optimisation loop
(``viclab.ablate.latent.run_latent``; ``--pairs graph`` adds the graph's kNN search) with its thread
count forced to 1 or 2, or chosen by the shipped rule (one thread when other processes keep half a
core busy), alone and beside ``--load`` processes each running large fp32 matrix products on 2
threads (what a concurrent training does to the CPU). Runs alternate, medians reported.

    python benchmarks/latent_load.py [--epochs 2] [--repeats 3] [--load 1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from viclab.ablate import latent  # noqa: E402
from viclab.config import LatentConfig  # noqa: E402
from viclab.core.context import QUIET  # noqa: E402
from viclab.core.runtime import others_busy_cores  # noqa: E402

LOAD = "import torch\ntorch.set_num_threads(2)\na = torch.randn(1024, 1024)\nwhile True:\n    a @ a\n"


def one_run(threads: str, epochs: int, data_dir: str | None, pairs: str) -> float:
    """``threads``: "1" or "2" forced (by faking the load probe), or "auto" (the shipped rule)."""
    cfg = LatentConfig(pairs=pairs, data_dir=data_dir, epochs=epochs)
    latent.others_busy_cores = {"1": lambda: 99.0, "2": lambda: 0.0, "auto": others_busy_cores}[threads]
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        summary = latent.run_latent(cfg, Path(d) / "run", ctx=QUIET)
        assert summary["epochs"] == epochs
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--load", type=int, default=1, help="busy processes beside the loaded runs")
    ap.add_argument("--data-dir")
    ap.add_argument("--pairs", default="naive", help="graph: also build the 10-NN graph (faiss) each run")
    ap.add_argument("--name", default="latent_load")
    args = ap.parse_args()
    times: dict[str, list[float]] = {}
    for loaded in (False, True):
        procs = [subprocess.Popen([sys.executable, "-c", LOAD]) for _ in range(args.load if loaded else 0)]
        try:
            time.sleep(2 if loaded else 0)
            for _ in range(args.repeats):
                for threads in ("1", "2", "auto"):
                    key = f"{'loaded' if loaded else 'quiet'}, threads {threads}"
                    times.setdefault(key, []).append(one_run(threads, args.epochs, args.data_dir, args.pairs))
                    print(f"{key}: {times[key][-1]:.1f}s", flush=True)
        finally:
            for p in procs:
                p.kill()
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:20s} median {v:6.1f}s")
    for t in ("1", "2", "auto"):
        print(f"threads {t}: loaded / quiet = {med[f'loaded, threads {t}'] / med[f'quiet, threads {t}']:.2f}x")
    write_result(args.name, {"epochs": args.epochs, "pairs": args.pairs, "load_processes": args.load,
                             "seconds": times, "median_seconds": med})


if __name__ == "__main__":
    main()
