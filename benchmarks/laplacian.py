"""Laplacian Eigenmaps at scale: wall time and peak memory, and which eigen-solver is fastest.

1. The full method on 50,000 points of 1,024 dims (the S7 feature width): exact
   10-NN graph with faiss, symmetrisation, 64 eigenvectors with the default solver.
2. The three solvers side by side on the same graph (medians of ``--repeats``).

Peak memory is the process's maximum resident set size (``ru_maxrss``) measured in a
fresh subprocess per stage, so one stage's allocations never hide another's.

    python benchmarks/laplacian.py [--points 50000] [--solver-points 20000]

Writes ``benchmarks/results/laplacian.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def _points(n: int, dim: int, seed: int = 0, latent: int = 16):
    """Ten overlapping clusters on a 16-d subspace plus small noise: like image features, a
    low intrinsic dimension, so the kNN graph is connected (isotropic 1,024-d clusters are not)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((10, latent))
    z = centres[rng.integers(0, 10, n)] + rng.standard_normal((n, latent))
    basis = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    return (z @ basis + 0.1 * rng.standard_normal((n, dim))).astype(np.float32)


def stage(kind: str, n: int, dim: int, k: int, out_dim: int, solver: str) -> dict:
    """Run one stage in this process; returns its timings and peak RSS."""
    import resource

    from viclab.ablate.graph import knn_table, laplacian_eigenmaps, symmetric_knn_graph

    x = _points(n, dim)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    graph = symmetric_knn_graph(knn_table(x, k))
    t1 = time.perf_counter()
    maps = laplacian_eigenmaps(graph, out_dim, solver=solver)
    t2 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"kind": kind, "points": n, "dim": dim, "k": k, "eigenvectors": out_dim, "solver": solver,
            "graph_s": t1 - t0, "eigen_s": t2 - t1, "total_s": t2 - t0, "edges": graph.nnz // 2,
            "peak_rss_mib": peak / 1024, "input_rss_mib": base / 1024,
            "eigenvalue_range": [float(maps.eigenvalues[0]), float(maps.eigenvalues[-1])]}


def _subprocess(*args) -> dict:
    out = subprocess.run([sys.executable, __file__, "--stage", *map(str, args)], check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=50_000)
    p.add_argument("--dim", type=int, default=1024)
    p.add_argument("--solver-points", type=int, default=20_000,
                   help="points of the solver comparison (lobpcg and sklearn take minutes at 50,000)")
    p.add_argument("--solver-dim", type=int, default=32)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--eigenvectors", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="repeats of the default solver (others run once)")
    p.add_argument("--solvers", nargs="+", default=["arpack", "sklearn", "lobpcg"])
    p.add_argument("--stage", nargs=6, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.stage:
        kind, n, dim, k, out_dim, solver = a.stage
        print(json.dumps(stage(kind, int(n), int(dim), int(k), int(out_dim), solver)))
        return

    from viclab.config import EigenmapsConfig

    default = EigenmapsConfig().solver
    print(f"Laplacian Eigenmaps, {a.points} points x {a.dim} dims, {a.k}-NN, {a.eigenvectors} eigenvectors "
          f"({os.cpu_count()} cores)")
    full = [_subprocess("full", a.points, a.dim, a.k, a.eigenvectors, default) for _ in range(a.repeats)]
    med = {key: statistics.median(r[key] for r in full) for key in ("graph_s", "eigen_s", "total_s", "peak_rss_mib")}
    print(f"  full ({default}): graph {med['graph_s']:.1f}s + eigen {med['eigen_s']:.1f}s = {med['total_s']:.1f}s "
          f"(median of {a.repeats}), peak RSS {med['peak_rss_mib']:.0f} MiB")
    solvers = {}
    for solver in a.solvers:
        runs = [_subprocess("solver", a.solver_points, a.solver_dim, a.k, a.eigenvectors, solver)
                for _ in range(a.repeats if solver == default else 1)]
        solvers[solver] = {"eigen_s": statistics.median(r["eigen_s"] for r in runs), "runs": len(runs),
                           "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                           "eigenvalue_range": runs[0]["eigenvalue_range"]}
        print(f"  solver {solver:8s}: {solvers[solver]['eigen_s']:7.1f}s on {a.solver_points} points "
              f"({len(runs)} run{'s' if len(runs) > 1 else ''}), peak RSS {solvers[solver]['peak_rss_mib']:.0f} MiB, "
              f"eigenvalues {runs[0]['eigenvalue_range'][0]:.3e}..{runs[0]['eigenvalue_range'][1]:.4f}")
    fastest = min(solvers, key=lambda s: solvers[s]["eigen_s"])
    ratios = {s: solvers[s]["eigen_s"] / solvers[fastest]["eigen_s"] for s in solvers}
    print("  fastest: " + fastest + "; " + ", ".join(f"{s} {r:.1f}x" for s, r in ratios.items()))
    RESULTS.mkdir(exist_ok=True)
    payload = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                           "python": platform.python_version()},
               "full": {"median": med, "runs": full}, "solvers": solvers, "fastest_solver": fastest,
               "ratio_to_fastest": ratios, "target_s": 120}
    (RESULTS / "laplacian.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(f"-> {RESULTS / 'laplacian.json'}")


if __name__ == "__main__":
    main()
