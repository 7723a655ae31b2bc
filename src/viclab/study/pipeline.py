"""The whole study of spec §3 as cached stages, then ``results.json`` and ``report.html``.

Folder layout::

    STUDY/config.json, meta.json    the resolved StudyConfig and its provenance
    STUDY/stages/<stage>.json       each stage's inputs fingerprint, status, result, time
    STUDY/runs/<method>/            the training / ablation run folders
    STUDY/eval/<method>/            their evaluations (JSON + figures)
    STUDY/eval/anomaly/             ROC and most anomalous images (A1-A3)
    STUDY/detect/                   one-class detection (§4): detector folders, ROC/PR, monitor
    STUDY/figures/                  the training-curve figures (S1)
    STUDY/results.json              every number
    STUDY/report.html               the self-contained report
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from viclab.ablate import neighbours_config, run_eigenmaps, run_latent
from viclab.ablate.neighbours import NEIGHBOURS_INFO
from viclab.config import Config, MonitorConfig, StudyConfig
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write_text, check_writable_dir, remove_stale_temp
from viclab.core.runtime import barrier, broadcast_object, init_distributed, is_main, select_runtime
from viclab.data import load_images, resolve_data_dir
from viclab.data.sounds import sound_fingerprint
from viclab.data.types import data_fingerprint
from viclab.detect import compare, run_monitor
from viclab.detect.anomaly import run_anomaly
from viclab.detect.api import scoring_runtime
from viclab.engine import train
from viclab.engine.rundir import CONFIG, META, METRICS, config_json, read_metrics, write_run_files
from viclab.eval import tasks as t
from viclab.models import build_model
from viclab.plot import figures
from viclab.report.html import METHODS, write_report
from viclab.represent.encode import eval_runtime, load_source, representations
from viclab.represent.layers import StagePool
from viclab.study.sound import fsdd_stage, machines_stage, sound_runtimes
from viclab.study.stages import Stage, code_fingerprint, run_stages

RESULTS = "results.json"
TOP_ANOMALIES = 8  # most anomalous images shown per detector (one-class detection)


def _without_paths(d: dict[str, Any]) -> dict[str, Any]:
    """A config dict without its data folder: where the files are does not change the numbers."""
    return {k: (_without_paths(v) if isinstance(v, dict) else v) for k, v in d.items() if k != "data_dir"}


def data_fingerprints(cfg: StudyConfig) -> dict[str, Any]:
    """Hashes and sizes of every split the study reads (each stage's inputs hold those it reads); loading them all first
    also checks, before any stage runs, that every dataset is there."""
    out, r = {}, cfg.recipe
    for dataset, split in ((r.data.dataset, "train"), (r.data.dataset, "test"), (cfg.anomalies, "test")):
        data = load_images(dataset, split, r.data.data_dir, r.augment.size)
        out[f"{dataset}/{split}"] = {"images": len(data), "hash": data_fingerprint(data)}
    if cfg.sound:  # the sound sets: every file's path and content
        root = resolve_data_dir(r.data.data_dir)
        for name in ("mimii", "fsdd"):
            try:
                found = sound_fingerprint(name, root)
            except ViclabError as e:
                raise ViclabError(f"the study's sound part needs {name} in {root}: {e}; put it there, or leave the "
                                  "sound part out with study.sound=false") from None
            out[f"{name}/files"] = {"images": found["files"], "hash": found["hash"]}
    return out


def representation_stats(features: np.ndarray) -> dict[str, float]:
    """How spread a representation is: the variance share of its first two principal
    components and its effective rank (exp of the entropy of the normalised PCA spectrum)."""
    x = features.astype(np.float64) - features.mean(0)
    ev = np.linalg.svd(x, compute_uv=False) ** 2
    p = ev / ev.sum() if ev.sum() > 0 else np.ones_like(ev) / len(ev)
    nz = p[p > 0]
    return {"pca2_share": float(p[:2].sum()), "effective_rank": float(np.exp(-(nz * np.log(nz)).sum())),
            "dim": int(features.shape[1])}


def _train_stage(cfg: Config, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        # A folder with a config is this stage's killed run (another config would have cleared it).
        # Under torchrun rank 0's answer holds for all (it may write the config before another rank looks).
        resume = broadcast_object((folder / CONFIG).exists())
        result = train(cfg, folder, resume=resume, ctx=ctx)
        if not is_main():
            return {}
        out = {"epochs": cfg.train.epochs, "steps": max(r["step"] for r in read_metrics(folder / METRICS)),
               "last_epoch_train": result.train, "test": result.test}
        if (folder / NEIGHBOURS_INFO).exists():  # S6: how often a neighbour shares the class
            out["same_class"] = json.loads((folder / NEIGHBOURS_INFO).read_text())["same_class"]
        return out
    return run


def _evaluate(name: str, tasks: tuple[str, ...], cfg: StudyConfig, run_dir: Path,
              ctx: Context) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        enc = load_source(run_dir, name=METHODS[name], seed=cfg.eval.seed)
        fns = {"probe": t.run_probe, "plot": t.run_plot, "retrieve": t.run_retrieve, "cluster": t.run_cluster}
        out: dict[str, Any] = {task: fns[task](enc, out=folder, cfg=cfg.eval, ctx=ctx) for task in tasks}
        test = representations(enc, "test", ctx=replace(QUIET, data_dir=ctx.data_dir))
        return out | {"representation": representation_stats(test.features), "n_classes": len(test.data.classes)}
    return run


@dataclass(frozen=True)
class _Inputs:
    """What stages' fingerprints are made of: the splits they read, the code they run, their configs."""

    data: dict[str, Any]  # :func:`data_fingerprints`
    codes: dict[tuple[str, ...], str] = field(default_factory=dict)

    def reads(self, *keys: str) -> dict[str, Any]:
        """The hashes of the splits a stage reads (only those: other data changes leave it cached)."""
        return {k: self.data[k] for k in keys}

    def code(self, *entries: str) -> str:
        """The hash of the code a stage runs: the ``entries`` with everything they import, and this module."""
        if entries not in self.codes:
            self.codes[entries] = code_fingerprint(entries, own=("viclab.study.pipeline", "viclab.study.stages"))
        return self.codes[entries]

    @staticmethod
    def conf(c: Any) -> dict[str, Any]:
        return _without_paths(asdict(c))


def _latent_stage(c: Any, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    def run(folder: Path) -> dict[str, Any]:
        summary = run_latent(c, folder, ctx)
        inv = [r["invariance"] for r in read_metrics(folder / METRICS)]
        return {**summary, "max_abs_invariance": float(np.max(np.abs(inv))), "batches": len(inv)}
    return run


def _training_stages(cfg: StudyConfig, runs: dict[str, Path], fp: _Inputs, ctx: Context) -> list[Stage]:
    """The trainings and ablations: VICReg, mu = 0, neighbour pairs, latent optimisation, Eigenmaps."""
    recipe, conf = cfg.recipe, fp.conf
    train_key, test_key = f"{recipe.data.dataset}/train", f"{recipe.data.dataset}/test"
    subsets = [n for n in (cfg.no_variance_subset, recipe.data.subset) if n]  # the smaller, where both are set
    novar = replace(recipe, data=replace(recipe.data, subset=min(subsets, default=0)),
                    loss=replace(recipe.loss, var_weight=0.0))
    nbrs = neighbours_config(str(runs["vicreg"].resolve()), base=recipe, k=cfg.neighbour_k,
                             epochs=cfg.neighbour_epochs)
    # The report draws the test terms of VICReg (S1) and of mu = 0 (its contrast), not the neighbour model's.
    nbrs = replace(nbrs, train=replace(nbrs.train, eval_test=False))
    naive = replace(cfg.latent, pairs="naive", epochs=cfg.latent_naive_epochs)
    graph = replace(cfg.latent, pairs="graph")
    views = {k: v for k, v in conf(nbrs).items() if k != "views"} | {"k": cfg.neighbour_k}
    # Where and how precisely a stage computes changes its numbers: "auto" resolves on this machine, so a
    # study folder moved to another device type or precision recomputes the stages that depend on them.
    # (The latent optimisation always runs on the CPU in fp32, Laplacian Eigenmaps in float64 NumPy.)
    trains = select_runtime(recipe.train.device, recipe.train.precision).key
    # A training reads the test split only for its per-epoch test terms.
    trains_on = fp.reads(train_key, test_key) if recipe.train.eval_test else fp.reads(train_key)
    training = {"data": trains_on, "code": fp.code("viclab.engine.vicreg"), "runtime": trains}
    neighbour_training = {"data": fp.reads(train_key), "code": fp.code("viclab.ablate.neighbours"),
                          "runtime": {"train": trains, "encode": eval_runtime().key}}  # it encodes with the default
    latent_in = {"data": fp.reads(train_key), "code": fp.code("viclab.ablate.latent")}
    return [
        Stage("vicreg", "train VICReg (S1-S3)", {"config": conf(recipe), **training}, _train_stage(recipe, ctx),
              "runs/vicreg", collective=True),
        Stage("no_variance", "train VICReg with mu = 0 (S4)", {"config": conf(novar), **training},
              _train_stage(novar, ctx), "runs/no_variance", collective=True),
        Stage("neighbours", f"train on {cfg.neighbour_k}-NN pairs of the VICReg model (S6)",
              {"config": views, **neighbour_training}, _train_stage(nbrs, ctx), "runs/neighbours", after=("vicreg",),
              collective=True),
        Stage("latent_naive", "latent optimisation, naive pairs (S5)", {"config": conf(naive), **latent_in},
              _latent_stage(naive, ctx), "runs/latent_naive"),
        Stage("latent_graph", "latent optimisation, graph pairs (S5)", {"config": conf(graph), **latent_in},
              _latent_stage(graph, ctx), "runs/latent_graph"),
        Stage("eigenmaps", "Laplacian Eigenmaps on all images (S7)",
              {"config": conf(cfg.eigenmaps), "data": fp.reads(train_key, test_key),
               "code": fp.code("viclab.ablate.graph")},
              lambda folder: run_eigenmaps(cfg.eigenmaps, folder, ctx), "runs/eigenmaps"),
    ]


EVALUATIONS = {"vicreg": ("probe", "plot", "retrieve", "cluster"), "no_variance": ("probe", "plot"),
               "neighbours": ("probe", "plot", "retrieve", "cluster"), "latent_naive": ("probe",),
               "latent_graph": ("probe",), "eigenmaps": ("probe", "plot")}


def _evaluation_stages(cfg: StudyConfig, runs: dict[str, Path], fp: _Inputs, ctx: Context) -> list[Stage]:
    """Each method's evaluations (spec §3), then kNN anomaly detection (A1-A3)."""
    recipe = cfg.recipe
    ctx = replace(ctx, data_dir=recipe.data.data_dir)  # the evaluations read the recipe's data root
    train_key, test_key = f"{recipe.data.dataset}/train", f"{recipe.data.dataset}/test"
    ev = {"eval": fp.conf(cfg.eval), "data": fp.reads(train_key, test_key), "code": fp.code("viclab.eval.tasks"),
          "runtime": eval_runtime(cfg.eval).key}
    stages = [Stage(f"eval_{name}", f"evaluate {METHODS[name]}: {', '.join(tasks)}", {**ev, "tasks": list(tasks)},
                    _evaluate(name, tasks, cfg, runs[name], ctx), f"eval/{name}", after=(name,))
              for name, tasks in EVALUATIONS.items()]

    def anomaly(folder: Path) -> dict[str, Any]:
        pair = ("vicreg", "neighbours")
        return run_anomaly([runs[m] for m in pair], out=folder, anomalies=cfg.anomalies,
                           names=[METHODS[m] for m in pair], cfg=cfg.eval, ctx=ctx)

    stages.append(Stage("anomaly", f"kNN anomaly detection vs {cfg.anomalies} (A1-A3)",
                        {**ev, "anomalies": cfg.anomalies,
                         "data": fp.reads(train_key, test_key, f"{cfg.anomalies}/test"),
                         "code": fp.code("viclab.detect.anomaly")},
                        anomaly, "eval/anomaly", after=("vicreg", "neighbours")))
    return stages


def _detection_stage(cfg: StudyConfig, ctx: Context) -> Callable[[Path], dict[str, Any]]:
    """One-class detection (§4): per class of ``detect_classes``, every detector of :mod:`viclab.detect.compare`
    fitted on that class's training images and tested on the whole test split; for the first class also the ROC and
    precision-recall curves, the most anomalous test images and the VICReg-term monitor."""
    def run(folder: Path) -> dict[str, Any]:
        first: dict[str, Any] = {}

        def keep_first(c: str, ev: dict[str, Any]) -> None:
            if not first:
                first.update(ev, cls=c)

        base = cfg.detect
        result = compare.one_class(base, cfg.detect_classes, folder / "detectors", ctx=ctx, on_class=keep_first)
        test, labels = first["test"], first["test"].labels
        # The detectors drawn in the figures: each once (vicreg_terms by its configured score).
        names = [k for k in first["metrics"] if ":" not in k or k == f"vicreg_terms:{base.score}"]
        figures.roc_pr_png([(n, labels, first["scores"][n]) for n in names],
                           f"one-class {cfg.recipe.data.dataset}, class {first['cls']} normal: "
                           f"{int((labels == 0).sum())} normal vs {int((labels == 1).sum())} anomalous test images",
                           folder / "roc_pr.png")
        rows = [(n, first["scores"][n], lambda i: test.data.images[i],
                 lambda i, s: f"{test.origin[i].split(':')[-1]} {s:.3g}") for n in names]
        figures.top_anomalies_png(rows, TOP_ANOMALIES, f"class {first['cls']} normal: the {TOP_ANOMALIES} most "
                                  "anomalous test images per detector (true class, score)",
                                  folder / "top_anomalies.png", test.data.modality)
        # Batches of at most 64, and no more images than the smaller side holds (no image twice in a batch).
        batch = min(MonitorConfig.batch_size, int((labels == 0).sum()), int((labels == 1).sum()))
        monitor = run_monitor(folder / "detectors" / f"class-{first['cls']}" / "vicreg_terms", folder / "monitor",
                              batch_size=batch, ctx=ctx) if batch >= 2 else None
        return {**result, "first_class": first["cls"], "figure_detectors": names,
                "monitor": {k: monitor[k] for k in ("stream", "batch_size", "mean")} if monitor else None,
                "recipe": {"epochs": base.recipe.train.epochs, "views": base.views,
                           "autoencoder_epochs": base.autoencoder.epochs, "backbone": base.recipe.model.backbone}}

    return run


def _detection_stages(cfg: StudyConfig, fp: _Inputs, ctx: Context) -> list[Stage]:
    """One-class detection with every detector (§4), and the sound part when asked."""
    dataset, det = cfg.recipe.data.dataset, cfg.detect
    classes = ", ".join(cfg.detect_classes)
    stages = [Stage("detect", f"one-class anomaly detection, every detector, classes {classes} (§4)",
                    {"config": fp.conf(det), "shift_recipe": fp.conf(compare.shift_recipe(det)),
                     "classes": list(cfg.detect_classes),
                     "data": fp.reads(f"{dataset}/train", f"{dataset}/test"),
                     "runtime": {"train": select_runtime(det.recipe.train.device, det.recipe.train.precision).key,
                                 "score": scoring_runtime(det).key}, "code": fp.code("viclab.detect")},
                    _detection_stage(cfg, ctx), "detect")]
    if not cfg.sound:
        return stages
    sound_fields = {k: v for k, v in fp.conf(cfg).items() if k.startswith("sound")} | {
        "min_steps": cfg.recipe.train.min_steps}  # the sound trainings take the study's step floor
    sound_code = fp.code("viclab.detect.protocols", "viclab.detect.resynth", "viclab.study.sound")
    runtimes = sound_runtimes(cfg)
    return [*stages,
            Stage("sound_machines", f"machine sounds, every detector: {', '.join(cfg.sound_machines)} (§4)",
                  {"config": sound_fields, "data": fp.reads("mimii/files"), "code": sound_code,
                   "runtime": runtimes["sound_machines"]}, machines_stage(cfg, ctx), "sound/machines"),
            Stage("sound_fsdd", "spoken digits: VICReg probed on held-out speakers, Griffin-Lim (§4)",
                  {"config": sound_fields, "data": fp.reads("fsdd/files"), "code": sound_code,
                   "runtime": runtimes["sound_fsdd"]}, fsdd_stage(cfg, ctx), "sound/fsdd")]


# Seconds each stage of the cpu study took on 2 fp32 cores (AMD EPYC, AVX2; issue 26's fresh-clone run of
# 2026-12-07, benchmarks/results/study_cpu.json; detect and sound_machines re-measured alone by issue 27,
# results/study_s4_27.json), and the epochs its trainings ran there: the progress line's remaining time starts from
# these and corrects for the machine as the study goes.
REFERENCE_SECONDS = {"vicreg": 404, "no_variance": 110, "neighbours": 269, "latent_naive": 17, "latent_graph": 68,
                     "eigenmaps": 71, "eval_vicreg": 65, "eval_no_variance": 71, "eval_neighbours": 93,
                     "eval_latent_naive": 2, "eval_latent_graph": 2, "eval_eigenmaps": 10, "anomaly": 30,
                     "detect": 450, "sound_machines": 207, "sound_fsdd": 231}
REFERENCE_EPOCHS = {"vicreg": 1, "no_variance": 1, "neighbours": 1, "latent_naive": 3, "latent_graph": 5}


def stage_estimates(cfg: StudyConfig) -> dict[str, float]:
    """Each stage's expected seconds on the reference machine: its time there, the trainings' scaled by their
    epochs (a study's other sizes change less; the progress line corrects for the machine as it goes)."""
    epochs = {"vicreg": cfg.recipe.train.epochs, "no_variance": cfg.recipe.train.epochs,
              "neighbours": cfg.neighbour_epochs,
              "latent_naive": cfg.latent_naive_epochs, "latent_graph": cfg.latent.epochs}
    return {name: s * epochs.get(name, 1) / REFERENCE_EPOCHS.get(name, 1) for name, s in REFERENCE_SECONDS.items()}


def build_stages(cfg: StudyConfig, study_dir: Path, ctx: Context, data: dict[str, Any]) -> list[Stage]:
    """The study's stages in order: trainings, evaluations, detection (``data``: :func:`data_fingerprints`)."""
    fp = _Inputs(data)
    runs = {name: study_dir / "runs" / name for name in METHODS}
    stages = [*_training_stages(cfg, runs, fp, ctx), *_evaluation_stages(cfg, runs, fp, ctx),
              *_detection_stages(cfg, fp, ctx)]
    estimates = stage_estimates(cfg)
    return [replace(s, estimate=estimates.get(s.name, 1.0)) for s in stages]


def check_detectors(cfg: StudyConfig) -> None:
    """What the detection stage would refuse hours in, refused before the study starts: every stage pooled
    (``detect.layers=all``) needs a backbone that names its stages."""
    if cfg.detect.layers == "all":
        StagePool(build_model(cfg.detect.recipe)[0].encoder)


def run_study(cfg: StudyConfig, out: str | Path, ctx: Context = DEFAULT_CONTEXT) -> dict[str, Any]:
    """Run (or continue) the whole study in ``out``; write ``results.json`` and ``report.html``.

    Every stage is cached in ``out``: running again skips finished stages whose inputs (configs, data hashes, upstream
    results) are unchanged and continues a stage that was killed (training from its last checkpoint). Under torchrun the
    training stages run data-parallel on every process and the rest on rank 0.

    Returns:
        The contents of ``results.json`` (``{}`` on ranks other than 0).
    """
    from tqdm import tqdm

    rt = select_runtime(cfg.recipe.train.device, cfg.recipe.train.precision)
    init_distributed(rt.device)  # under torchrun: the training stages run data-parallel
    main = is_main()
    ctx = ctx.main_only(main)
    if ctx.progress and ctx.echo is print:
        ctx = replace(ctx, echo=tqdm.write)  # lines go above the progress bars instead of through them
    study_dir = Path(broadcast_object(str(out)))
    t0 = time.perf_counter()
    check_writable_dir(study_dir, "study folder")
    data = data_fingerprints(cfg)  # every dataset is there: checked before the study folder is made
    check_detectors(cfg)
    if main:
        study_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp(study_dir, recursive=True)  # what killed writers left; this study is the only writer
        resumed = (study_dir / META).exists()
        if resumed and (study_dir / CONFIG).exists():  # config.json is this invocation's: a new study's is
            atomic_write_text(study_dir / CONFIG, config_json(cfg) + "\n")  # written by write_run_files
        write_run_files(study_dir, cfg, rt.device, resumed=resumed)
    barrier()
    records = run_stages(study_dir, build_stages(cfg, study_dir, ctx, data), ctx)
    if not main:
        return {}
    results = {"preset": cfg.preset, "config": cfg.to_dict(), "data": data,
               "stages": {name: r.result for name, r in records.items()},
               "seconds": {"stages": {name: r.seconds for name, r in records.items()},
                           "total": sum(r.seconds for r in records.values()),
                           "this_invocation": time.perf_counter() - t0}}
    results["table"] = headline_table(results)
    results = json.loads(json.dumps(results, default=str))  # exactly what results.json holds
    report = write_report(study_dir, results)
    results["seconds"]["this_invocation"] = time.perf_counter() - t0
    atomic_write_text(study_dir / RESULTS, json.dumps(results, indent=2) + "\n")
    ctx.echo(f"study finished: {sum(r.seconds for r in records.values()):.0f}s of computation in all "
             f"({results['seconds']['this_invocation']:.0f}s in this run)")
    ctx.echo(f"report: {report.resolve()}")
    return results


def headline_table(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: probe, kNN, retrieval, anomaly and clustering numbers (None: not evaluated)."""
    st = results["stages"]
    auroc = {r["name"]: r["auroc"] for r in st["anomaly"]["runs"]}
    rows = []
    for key, label in METHODS.items():
        e = st[f"eval_{key}"]
        probe, cluster = e["probe"], e.get("cluster", {})
        rows.append({
            "method": key, "name": label, "linear_top1": probe["linear"]["top1"],
            "linear_top5": probe["linear"]["top5"], "knn_top1": probe["knn"]["top1"], "n_train": probe["n_train"],
            "n_test": probe["n_test"], "precision_at_k": e["retrieve"]["precision_at_k"] if "retrieve" in e else None,
            "auroc": auroc.get(label), "silhouette": cluster.get("silhouette"), "ari": cluster.get("ari"),
            **e["representation"], "train_seconds": results["seconds"]["stages"][key]})  # pca2_share, eff. rank, dim
    return rows
