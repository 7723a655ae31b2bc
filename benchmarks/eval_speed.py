"""Evaluation speed on synthetic features: probe, kNN classifier, kNN anomaly scores,
K-means + silhouette, t-SNE; each next to the obvious alternative, in one run.

    python benchmarks/eval_speed.py            # 50,000 x 128 train, 11,000 x 128 test
    python benchmarks/eval_speed.py --quick    # smaller, for a smoke run

Writes benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_time, write_result  # noqa: E402

from viclab.eval.cluster import kmeans, silhouette, tsne_2d  # noqa: E402
from viclab.eval.probe import knn_accuracy, linear_probe  # noqa: E402
from viclab.represent.neighbors import knn_anomaly_scores  # noqa: E402


def synthetic(n: int, d: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A class-structured Gaussian mixture: overlapping clusters, like real representations."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(classes, d)) * 0.25
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y


def once(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-sklearn", action="store_true", help="skip the sklearn comparisons (slow)")
    args = ap.parse_args()
    n_train, n_test, n_tsne = (5000, 1100, 1000) if args.quick else (50_000, 11_000, 10_000)
    d = 128
    xtr, ytr = synthetic(n_train, d, 10, 0)
    xte, yte = synthetic(n_test, d, 10, 1)
    r = args.repeats
    res: dict[str, dict] = {}

    def record(name, seconds, **extra):
        res[name] = {"seconds": round(seconds, 3), **extra}
        print(f"{name:32s} {seconds:8.2f} s  {extra if extra else ''}")

    probe = {}
    t, _ = median_time(lambda: probe.update(r=linear_probe(xtr, ytr, xte, yte)), r, warmup=0)
    record("linear_probe (L-BFGS, wd select)", t, top1=round(probe["r"].top1, 4), weight_decay=probe["r"].weight_decay)
    t, _ = median_time(lambda: probe.update(r=linear_probe(xtr, ytr, xte, yte, weight_decays=(1e-4,))), r, warmup=0)
    record("linear_probe (L-BFGS, one wd)", t, top1=round(probe["r"].top1, 4))
    if not args.no_sklearn:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        def sk_probe():
            s = StandardScaler().fit(xtr)
            m = LogisticRegression(C=1 / (len(xtr) * 1e-4), max_iter=300).fit(s.transform(xtr), ytr)
            return m.score(s.transform(xte), yte)

        t, acc = once(sk_probe)
        record("sklearn LogisticRegression", t, top1=round(acc, 4))
    t, _ = median_time(lambda: probe.update(k=knn_accuracy(xtr, ytr, xte, yte)), r, warmup=0)
    record("weighted kNN classifier (k=20)", t, top1=round(probe["k"][1], 4))
    t, _ = median_time(lambda: knn_anomaly_scores(xtr, xte, 2), r, warmup=1)
    record("kNN anomaly scores (faiss, k=2)", t)

    def numpy_scores():  # the brute-force reference, chunked so it fits in memory
        sq = (xtr ** 2).sum(1)
        out = []
        for s in range(0, len(xte), 1000):
            q = xte[s:s + 1000]
            d2 = (q ** 2).sum(1)[:, None] + sq[None] - 2 * q @ xtr.T
            out.append(np.sqrt(np.maximum(np.partition(d2, 2, axis=1)[:, :2], 0)).mean(1))
        return np.concatenate(out)

    t, _ = once(numpy_scores)
    record("kNN anomaly scores (NumPy)", t)
    t, (assign, _) = once(lambda: kmeans(xtr, 10, 0))
    record("K-means k=10 (sklearn, 3 starts)", t)
    t, sil = once(lambda: silhouette(xtr, assign))
    record(f"silhouette exact, {n_train} points", t, silhouette=round(sil, 4))
    if not args.no_sklearn:
        from sklearn.metrics import silhouette_score

        m = min(10_000, n_train)
        t_ours, s_ours = once(lambda: silhouette(xtr[:m], assign[:m]))
        t_sk, s_sk = once(lambda: silhouette_score(xtr[:m], assign[:m]))
        record(f"silhouette exact, {m} points", t_ours, silhouette=round(s_ours, 5))
        record(f"sklearn silhouette_score, {m} points", t_sk, silhouette=round(s_sk, 5))
    t, _ = once(lambda: tsne_2d(xtr[:n_tsne]))
    record(f"t-SNE openTSNE, {n_tsne} points", t)
    if not args.no_sklearn:
        from sklearn.manifold import TSNE

        t, _ = once(lambda: TSNE(init="pca", random_state=0).fit_transform(xtr[:n_tsne]))
        record(f"t-SNE sklearn, {n_tsne} points", t)
    write_result("eval_speed", {"n_train": n_train, "n_test": n_test, "dim": d, "tsne_points": n_tsne,
                                "repeats": r, "results": res})


if __name__ == "__main__":
    main()
