"""What a user asks of a trained encoder (spec §3), one function each, and one table comparing several encoders
(:func:`run_compare`); the CLI calls these.

Each task loads an encoder (run folder, ``.safetensors`` or ``random:BACKBONE``), computes (or reuses cached)
representations, writes its figures and a JSON summary into an output folder, and returns the summary.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from viclab.config import ANOMALIES, EVAL_DEFAULTS, EvalConfig
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.hashing import digest
from viclab.core.io import atomic_write_text, check_writable_dir
from viclab.core.metrics import binomial_interval, roc
from viclab.core.runtime import require_one_process
from viclab.data import DATASETS, SOUND_DATASETS, dataset_modality
from viclab.data.folder import held_out_split
from viclab.engine.rundir import CONFIG
from viclab.eval.cluster import kmeans, pca_2d, silhouette, tsne, tsne_2d, tsne_sample
from viclab.eval.probe import knn_accuracy, linear_probe
from viclab.plot import figures
from viclab.represent import neighbors
from viclab.represent.encode import PRETRAINED_DATASET, Representations, Source, eval_runtime, load_source
from viclab.represent.neighbors import check_k, farthest, nearest, one_query_per_class, precision_at_k

SourceLike = str | Path | Source
MAX_RETRIEVAL_K = 50  # the retrieval figure draws one column per image
# Below this many test items an accuracy's 95% interval is wider than about +/-10 points: say so.
TINY_TEST_SET = 100
INTERVAL = "95% Wilson binomial interval"  # what the *_interval fields of the JSON summaries are
COMPARE_COLUMNS = ("linear top-1", "kNN top-1", "AUROC vs {anomalies}", "silhouette")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text).strip("-.") or "data"


def dataset_label(dataset: str) -> str:
    """A dataset's part of an output folder's name: a registered name as it is; an image or sound folder by its name
    and a short hash of its absolute path, so two folders of one name (``a/photos``, ``b/photos``) never share one."""
    if dataset in DATASETS or dataset in SOUND_DATASETS:
        return _slug(dataset)
    path = Path(dataset).expanduser().resolve()
    return f"{_slug(path.name or dataset)}-{digest([str(path)])[:8]}"


def default_out_dir(encoder: Source, source: SourceLike, dataset: str | None = None) -> Path:
    """A run folder's own ``eval/`` (``eval-<dataset>/`` for another dataset than its training one), otherwise
    ``./eval-<name>`` (``./eval-<name>-<dataset>``)."""
    other = f"-{dataset_label(dataset)}" if dataset else ""
    if not isinstance(source, Source) and Path(source).is_dir():
        return Path(source) / f"eval{other}"
    return Path(f"eval-{_slug(encoder.name.replace(' ', '-').replace(':', '-'))}{other}")


class Task:
    """Shared set-up of a task: the encoder, its output folder, cached representations."""

    def __init__(self, source: SourceLike, out: str | Path | None, cfg: EvalConfig, ctx: Context, use_cache: bool,
                 name: str | None = None, dataset: str | None = None) -> None:
        require_one_process("an evaluation")
        self.encoder = source if isinstance(source, Source) else load_source(source, name=name, seed=cfg.seed)
        # Transfer: another dataset than the encoder's own, its images resized to the encoder's input size.
        self.dataset = dataset if dataset and dataset != self.encoder.config.data.dataset else None
        if not dataset and self.encoder.config.data.dataset == PRETRAINED_DATASET:
            raise ViclabError(f"{self.encoder.name} is a published checkpoint trained on ImageNet, which viclab does "
                              "not load; evaluate it on a dataset or image folder with --dataset NAME_OR_FOLDER")
        # Checked now, created by the first write: a failed task leaves no empty folder; an unwritable one fails first.
        self.out = check_writable_dir(Path(out) if out else default_out_dir(self.encoder, source, self.dataset))
        self.cfg, self.use_cache = cfg, use_cache
        self.ctx = replace(ctx, runtime=eval_runtime(cfg))
        # The training run folder a source names: its tb/ receives the evaluation figures.
        self.run_dir = Path(source) if not isinstance(source, Source) and (Path(source) / CONFIG).exists() else None

    @property
    def dataset_name(self) -> str:
        return self.dataset or self.encoder.config.data.dataset

    def reps(self, split: str, dataset: str | None = None) -> Representations:
        return self.encoder.represent(split, dataset or self.dataset, use_cache=self.use_cache, ctx=self.ctx)

    def write_json(self, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        payload = {"source": self.encoder.name, "weights_sha256": self.encoder.weights_sha256,
                   "backbone": self.encoder.config.model.backbone, "dataset": self.dataset_name,
                   "eval_config": asdict(self.cfg), **payload}
        atomic_write_text(self.out / name, json.dumps(payload, indent=2) + "\n")
        return payload

    def to_tensorboard(self, files: Sequence[Path]) -> None:
        """The PNG figures also in a run folder's TensorBoard log, as ``eval/<dataset>/<figure>`` at its last epoch."""
        if self.run_dir is not None:
            figures.pngs_to_tensorboard(self.run_dir / "tb", [(f"eval/{_slug(self.dataset_name)}/{Path(f).stem}", f)
                                                              for f in files if str(f).endswith(".png")],
                                        self.encoder.config.train.epochs)


def _acc(p: float, n: int) -> str:
    """An accuracy with its 95% binomial interval, e.g. ``68.80% [67.89, 69.70]``."""
    lo, hi = binomial_interval(p, n)
    return f"{100 * p:.2f}% [{100 * lo:.2f}, {100 * hi:.2f}]"


def _with_interval(name: str, p: float | None, n: int) -> dict[str, Any]:
    """``{name: p, name_interval: [low, high]}`` (the 95% binomial interval over ``n`` items)."""
    return {name: p, f"{name}_interval": None if p is None else list(binomial_interval(p, n))}


def _require_classes(reps: Representations, what: str) -> None:
    """Refuse data of one class: every image's nearest class is then right, so the number says nothing."""
    present = np.unique(reps.labels)
    if len(present) < 2:
        names = ", ".join(reps.data.classes[int(c)] for c in present) or "none"
        raise ViclabError(f"{reps.dataset} has {len(present)} class ({names}) in its {reps.split} images, so {what} "
                          "would score 100% whatever the encoder; give a dataset with at least two classes")


def _warn_if_tiny(n: int, what: str) -> None:
    if n < TINY_TEST_SET:
        warnings.warn(f"only {n} {what}: each accuracy's 95% interval (in brackets) spans many points; compare "
                      "encoders on a larger test set", ViclabWarning, stacklevel=3)


def _own_validation(dataset: str) -> bool:
    """Whether ``dataset`` is an image folder with a labelled ``val/`` apart from the ``test/`` it is tested on."""
    if dataset in DATASETS or dataset_modality(dataset) == "spectrogram":
        return False
    root = Path(dataset).expanduser()
    return (root / "train").is_dir() and (root / "val").is_dir() and held_out_split(root) == "test"


def _top5_text(top5: float | None, n: int) -> str:
    return "" if top5 is None else f" top-5 {_acc(top5, n)}"


def run_probe(source: SourceLike, out: str | Path | None = None, data_dir: str | None = None,
              cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True,
              dataset: str | None = None) -> dict[str, Any]:
    """Linear probe (spec S3) and weighted kNN classifier on train -> test representations.

    The probe's weight decay is chosen on the dataset's own ``val/`` when an image folder has one beside its
    ``test/``, else on a held-out tenth of the training images. Accuracies come with their 95% binomial interval;
    top-5 only above five classes. Writes ``probe.json``; returns the summary (accuracies as fractions).
    """
    t = Task(source, out, cfg, ctx.reading(data_dir), use_cache, dataset=dataset)
    train, test = t.reps("train"), t.reps("test")
    _require_classes(train, "a linear probe")
    check_k("knn_k (--knn-k)", cfg.knn_k, len(train.labels), "training representations")
    val = t.reps("val") if _own_validation(t.dataset_name) else None
    probe = linear_probe(train.features, train.labels, test.features, test.labels, cfg.probe_weight_decays,
                         seed=cfg.seed, val_x=None if val is None else val.features,
                         val_y=None if val is None else val.labels)
    t0 = time.perf_counter()
    knn = knn_accuracy(train.features, train.labels, test.features, test.labels, cfg.knn_k, cfg.knn_temperature)
    knn_seconds = time.perf_counter() - t0
    n = len(test.labels)
    _warn_if_tiny(n, "test images")
    selection = f"val/ ({len(val.labels)} images)" if val is not None else "a held-out tenth of the training images"
    ctx.echo(f"{t.encoder.name}: linear probe top-1 {_acc(probe.top1, n)}{_top5_text(probe.top5, n)} "
         f"(weight decay {probe.weight_decay:g} chosen on {selection}, {probe.seconds:.1f}s) | "
         f"{cfg.knn_k}-NN top-1 {_acc(knn[1], n)}{_top5_text(knn[5], n)} "
         f"[{len(train.labels)} train / {n} test images; 95% intervals]")
    return t.write_json("probe.json", {
        "n_train": len(train.labels), "n_test": n, "n_classes": len(train.data.classes),
        "image_size": t.encoder.config.augment.size, "interval": INTERVAL,
        "linear": {**_with_interval("top1", probe.top1, n), **_with_interval("top5", probe.top5, n),
                   "train_top1": probe.train_top1, "weight_decay": probe.weight_decay,
                   "selection": "val" if val is not None else "train_tenth",
                   "n_val": len(val.labels) if val is not None else None,
                   "val_top1": {str(k): v for k, v in probe.val_top1.items()}, "seconds": probe.seconds},
        "knn": {**_with_interval("top1", knn[1], n), **_with_interval("top5", knn[5], n), "k": cfg.knn_k,
                "temperature": cfg.knn_temperature, "seconds": knn_seconds},
    })


def run_plot(source: SourceLike, out: str | Path | None = None, data_dir: str | None = None,
             cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True,
             dataset: str | None = None) -> dict[str, Any]:
    """Test-set representations mapped to 2-D by PCA (all of them) and t-SNE (a seeded sample of ``cfg.tsne_points``,
    the points the cluster figure draws too), coloured by class (spec S2); writes ``pca.png``, ``pca.html``,
    ``tsne.png``, ``tsne.html`` and ``plot.json``."""
    t = Task(source, out, cfg, ctx.reading(data_dir), use_cache, dataset=dataset)
    test = t.reps("test")
    classes, n = test.data.classes, len(test.labels)
    sample = tsne_sample(n, cfg.tsne_points, cfg.seed)
    files, seconds = [], {}
    maps = (("pca", "PCA", np.arange(n), pca_2d), ("tsne", "t-SNE", sample, lambda x: tsne_2d(x, cfg.seed)))
    for method, label, rows, fn in maps:
        t0 = time.perf_counter()
        points = fn(test.features[rows])
        seconds[method] = time.perf_counter() - t0
        # test_split: latent codes exist only for training images, so their test split is a held-out share of those
        what = f"{len(rows)}" if len(rows) == n else f"a random sample of {len(rows)} of the {n}"
        title = f"{t.encoder.name}: {label} of {what} {test.dataset} {t.encoder.test_split} representations"
        files += [figures.scatter_png(points, test.labels[rows], classes, title, t.out / f"{method}.png"),
                  figures.scatter_html(points, test.labels[rows], classes, title, t.out / f"{method}.html")]
    t.to_tensorboard(files)
    ctx.echo(f"{t.encoder.name}: PCA {seconds['pca']:.1f}s, t-SNE of {len(sample)} points {seconds['tsne']:.1f}s -> "
         + ", ".join(str(f) for f in files))
    return t.write_json("plot.json", {"n_points": n, "tsne_points": len(sample), "seconds": seconds,
                                      "files": [str(f) for f in files]})


def run_retrieve(source: SourceLike, out: str | Path | None = None, data_dir: str | None = None,
                 cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True,
                 dataset: str | None = None) -> dict[str, Any]:
    """Nearest and most distant training images of one seeded query per class (spec S8). Writes
    ``retrieval_nearest.png``, ``retrieval_farthest.png`` and ``retrieval.json`` (with precision@k averaged over
    ``cfg.precision_queries`` queries)."""
    if cfg.retrieval_k > MAX_RETRIEVAL_K:
        raise ViclabError(f"retrieval_k (-k) = {cfg.retrieval_k}: the figure draws one column per image; use at most "
                          f"{MAX_RETRIEVAL_K}")
    t = Task(source, out, cfg, ctx.reading(data_dir), use_cache, dataset=dataset)
    train = t.reps("train")
    x, y, images, classes = train.features, train.labels, train.data.images, train.data.classes
    k = cfg.retrieval_k
    _require_classes(train, f"precision@{k}")
    check_k("retrieval_k (-k)", k, len(y) - 1, "other training images")
    queries = one_query_per_class(y, cfg.seed)
    near_d, near_i = nearest(x, x[queries], k, exclude=queries)
    far_d, far_i = farthest(x, x[queries], k)
    for kind, word, dist, idx in (("nearest", "nearest", near_d, near_i), ("farthest", "most distant", far_d, far_i)):
        rows = [(f"query: {classes[y[q]]}", [images[q], *images[idx[r]]],
                 [f"query #{q}", *(f"{classes[y[j]]} d={d:.2f}" for j, d in zip(idx[r], dist[r]))])
                for r, q in enumerate(queries)]
        figures.image_grid_png(rows, f"{t.encoder.name}: the {k} {word} training images (L2 in representation space)",
                               t.out / f"retrieval_{kind}.png", train.data.modality)
    t.to_tensorboard([t.out / "retrieval_nearest.png", t.out / "retrieval_farthest.png"])
    t0 = time.perf_counter()
    p_at_k = precision_at_k(x, y, k, cfg.precision_queries, cfg.seed)
    n_q = min(cfg.precision_queries, len(y))
    _warn_if_tiny(n_q, "retrieval queries")
    # Interval over the queries: each query's precision lies in [0, 1], so a binomial over n_q
    # items is conservative (a query's k neighbours are not independent trials).
    ctx.echo(f"{t.encoder.name}: precision@{k} {_acc(p_at_k, n_q)} over {n_q} training queries (95% interval) "
         f"({time.perf_counter() - t0:.1f}s) -> {t.out / 'retrieval_nearest.png'}, {t.out / 'retrieval_farthest.png'}")
    return t.write_json("retrieval.json", {
        "k": k, **_with_interval("precision_at_k", p_at_k, n_q), "interval": f"{INTERVAL} over the queries",
        "precision_queries": n_q,
        "queries": [{"index": int(q), "class": classes[y[q]],
                     "nearest": near_i[r].tolist(), "nearest_distance": near_d[r].tolist(),
                     "farthest": far_i[r].tolist(), "farthest_distance": far_d[r].tolist()}
                    for r, q in enumerate(queries)],
    })


def run_cluster(source: SourceLike, out: str | Path | None = None, data_dir: str | None = None,
                cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = DEFAULT_CONTEXT, use_cache: bool = True,
                dataset: str | None = None) -> dict[str, Any]:
    """K-means on training representations, silhouette in their dimension (spec C1-C3).

    The silhouette is exact over all training points. The figure draws the t-SNE map of the plot task (the same seeded
    sample of ``cfg.tsne_points`` test points, embedded once per process), each point coloured by its nearest K-means
    centre and by its class, the centres placed by openTSNE in black. Writes ``clusters.png`` and ``cluster.json``.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t = Task(source, out, cfg, ctx.reading(data_dir), use_cache, dataset=dataset)
    train, test = t.reps("train"), t.reps("test")
    x, y = train.features, train.labels
    if cfg.clusters >= len(y):
        raise ViclabError(f"clusters (--clusters) = {cfg.clusters} needs more training images than the {len(y)} "
                          f"there are; use at most {len(y) - 1}")
    t0 = time.perf_counter()
    assign, centres = kmeans(x, cfg.clusters, cfg.seed)
    t1 = time.perf_counter()
    sil = silhouette(x, assign)
    t2 = time.perf_counter()
    sample = tsne_sample(len(test.labels), cfg.tsne_points, cfg.seed)
    shown = test.features[sample]
    emb = tsne(shown, cfg.seed)
    centres_2d = np.asarray(emb.transform(centres), dtype=np.float32)
    t3 = time.perf_counter()
    nearest_centre = neighbors.nearest(centres, shown, 1)[1][:, 0]
    what = "all" if len(sample) == len(test.labels) else f"a random sample of {len(sample)} of the {len(test.labels)}"
    figures.cluster_png(np.asarray(emb), nearest_centre, test.labels[sample], train.data.classes, centres_2d,
                        f"{t.encoder.name}: K-means (k={cfg.clusters}) on training representations; t-SNE of "
                        f"{what} {t.encoder.test_split} points, each in its nearest centre's cluster; silhouette "
                        f"{sil:.3f}", t.out / "clusters.png")
    t.to_tensorboard([t.out / "clusters.png"])
    ari, nmi = adjusted_rand_score(y, assign), normalized_mutual_info_score(y, assign)
    ctx.echo(f"{t.encoder.name}: K-means k={cfg.clusters} silhouette {sil:.4f} (exact, all {len(y)} points, "
         f"{x.shape[1]}-d) | vs classes ARI {ari:.3f} NMI {nmi:.3f} -> {t.out / 'clusters.png'} "
         f"(t-SNE of {len(sample)} {t.encoder.test_split} points)")
    return t.write_json("cluster.json", {
        "k": cfg.clusters, "silhouette": sil, "silhouette_points": len(y), "ari": ari, "nmi": nmi,
        "cluster_sizes": np.bincount(assign, minlength=cfg.clusters).tolist(), "tsne_points": len(sample),
        "tsne_split": t.encoder.test_split,
        "seconds": {"kmeans": t1 - t0, "silhouette": t2 - t1, "tsne": t3 - t2},
    })


def compare_one(source: str | Path, name: str | None = None, anomalies: str = ANOMALIES,
                cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = QUIET, use_cache: bool = True,
                dataset: str | None = None) -> dict[str, Any]:
    """Linear-probe and kNN top-1, kNN-anomaly AUROC and K-means silhouette of one source, on ``dataset`` (default:
    the one it was trained on). The AUROC is ``None`` (with the reason) for a method that cannot represent the
    anomaly images (latent codes exist only for the training images)."""
    enc = load_source(source, name=name, seed=cfg.seed)
    if not dataset and enc.config.data.dataset == PRETRAINED_DATASET:
        raise ViclabError(f"{enc.name} is a published checkpoint trained on ImageNet, which viclab does not load; "
                          "compare it on a dataset or image folder with --dataset NAME_OR_FOLDER")
    if (dataset or enc.config.data.dataset) == anomalies:
        raise ViclabError(f"{enc.name} is evaluated on {anomalies}, so it cannot serve as the anomalies too; choose "
                          "another --anomalies dataset or image folder")
    options = {"use_cache": use_cache, "ctx": replace(ctx, runtime=eval_runtime(cfg))}
    t0 = time.perf_counter()
    train, test = enc.represent("train", dataset, **options), enc.represent("test", dataset, **options)
    for name, k in (("knn_k", cfg.knn_k), ("anomaly_k", cfg.anomaly_k)):
        check_k(name, k, len(train.labels), f"training representations of {enc.name}")
    if cfg.clusters >= len(train.labels):
        raise ViclabError(f"clusters = {cfg.clusters} needs more training images than {enc.name} has "
                          f"({len(train.labels)}); use at most {len(train.labels) - 1}")
    probe = linear_probe(train.features, train.labels, test.features, test.labels, cfg.probe_weight_decays,
                         seed=cfg.seed)
    knn = knn_accuracy(train.features, train.labels, test.features, test.labels, cfg.knn_k, cfg.knn_temperature)
    auroc, why = None, None
    try:
        odd = enc.represent("test", anomalies, **options)
        truth = np.r_[np.zeros(len(test.labels)), np.ones(len(odd.labels))]
        scores = neighbors.knn_anomaly_scores(train.features, np.r_[test.features, odd.features], cfg.anomaly_k)
        auroc = roc(truth, scores)[2]
    except ViclabError as e:
        why = str(e)
    assign, _ = kmeans(train.features, cfg.clusters, cfg.seed)
    held_out = "test" if enc.test_split == "test" else f"{enc.test_split} images"
    return {"name": enc.name, "source": str(source), "weights_sha256": enc.weights_sha256, "kind": enc.kind,
            "dim": enc.dim, "dataset": dataset or enc.config.data.dataset, "n_train": len(train.labels),
            "n_test": len(test.labels), "test_split": held_out, "linear_top1": probe.top1, "linear_top5": probe.top5,
            "knn_top1": knn[1], "auroc": auroc, "auroc_unavailable": why,
            "silhouette": silhouette(train.features, assign), "seconds": time.perf_counter() - t0}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def markdown_table(rows: Sequence[dict[str, Any]], anomalies: str) -> str:
    """The comparison as a Markdown table (accuracies in %, n/a where undefined)."""
    head = ["run", "probe data (train / test)", *(c.format(anomalies=anomalies) for c in COMPARE_COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        data = f"{r['n_train']} / {r['n_test']}" + (" held-out codes" if r["test_split"] != "test" else "")
        auroc = "n/a" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(f"| {r['name']} | {data} | {_pct(r['linear_top1'])} | {_pct(r['knn_top1'])} | {auroc} | "
                     f"{r['silhouette']:.3f} |")
    return "\n".join(lines) + "\n"


def run_compare(sources: Sequence[str | Path], names: Sequence[str] | None = None, out: str | Path | None = None,
                anomalies: str = ANOMALIES, cfg: EvalConfig = EVAL_DEFAULTS, ctx: Context = DEFAULT_CONTEXT,
                use_cache: bool = True, dataset: str | None = None) -> dict[str, Any]:
    """Compare runs (spec S3/S4/S5/S6/S7 side by side); writes ``compare.json`` and ``compare.md``.

    Args:
        sources: run folders, ``.safetensors`` files or ``random:BACKBONE``.
        names: one label per source (default: folder or file names).
        out: output folder (default ``./compare``).
        anomalies: dataset whose test split serves as anomalies for the AUROC column.
        dataset: probe, cluster and take the normal images from this dataset (a registered name or an image folder)
            instead of each source's training dataset.
    """
    require_one_process("viclab compare")
    if not sources:
        raise ViclabError("compare needs at least one run folder or weights file")
    if names is not None and len(names) != len(sources):
        raise ViclabError(f"{len(names)} names for {len(sources)} sources; give one name per source")
    out_dir = check_writable_dir(Path(out or "compare"))
    rows = []
    for i, s in enumerate(sources):
        rows.append(compare_one(s, names[i] if names else None, anomalies, cfg, ctx, use_cache, dataset))
        ctx.echo(f"{rows[-1]['name']}: done in {rows[-1]['seconds']:.1f}s")
    table = markdown_table(rows, anomalies)
    payload = {"anomalies": anomalies, "eval_config": asdict(cfg), "runs": rows}
    atomic_write_text(out_dir / "compare.json", json.dumps(payload, indent=2) + "\n")
    atomic_write_text(out_dir / "compare.md", table)
    ctx.echo(table + f"-> {out_dir / 'compare.md'}, {out_dir / 'compare.json'}")
    return payload
