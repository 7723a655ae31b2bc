"""The ``viclab`` command: a thin layer, each subcommand calls one library function.

Every user mistake ends as one line ``viclab: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from viclab.core.errors import ViclabError, ViclabWarning


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise ViclabError(f"{message} (see '{self.prog} --help')")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train VICReg and write a run folder",
                       description="Train VICReg. Config = preset, then --config TOML, then section.field=value "
                                   "overrides (e.g. optim.lr=1e-3 train.epochs=5).")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train, force=[], kind=None)


def _cmd_train(args: argparse.Namespace) -> int:
    from viclab.ablate import VIEWS
    from viclab.config import resolve_config
    from viclab.engine import train

    overrides = list(args.overrides) + args.force  # forced last: an ablation's defining change wins
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.resume:
        from viclab.engine.rundir import read_config

        run_dir = Path(args.resume)
        # Without a preset/TOML, overrides apply to the run's own config (then must not change it).
        base = None if (args.preset or args.config) else read_config(run_dir)
        cfg = resolve_config(args.preset, args.config, overrides, base=base)
    else:
        cfg = resolve_config(args.preset, args.config, overrides)
        name = args.name or f"{args.kind or args.preset or 'exercise'}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(args.out) / name
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress,
                   views=VIEWS[cfg.views.kind])
    _say_main(f"run folder: {result.run_dir}")
    return 0


def _say_main(line: str) -> None:
    """Print on rank 0 only (under torchrun every process runs the command)."""
    from viclab.core.runtime import is_main

    if is_main():
        print(line)


# subcommand -> (help, description, [(flag, EvalConfig field, type, help)]); defaults come from EvalConfig.
_EVAL_COMMANDS = {
    "probe": ("linear probe and weighted kNN accuracy",
              "Linear probe (L-BFGS on standardised frozen representations, weight decay chosen on an image "
              "folder's val/, else a held-out tenth) and weighted kNN classifier: top-1 (top-5 above five classes) "
              "on the test set, with 95% binomial intervals.",
              [("--knn-k", "knn_k", int, "neighbours of the kNN classifier"),
               ("--temperature", "knn_temperature", float, "kNN vote temperature")]),
    "plot": ("PCA and t-SNE maps of test representations",
             "Test-set representations in 2-D by PCA and t-SNE, coloured by class (PNG and HTML).", []),
    "retrieve": ("nearest and most distant training images per class",
                 "One seeded training image per class, its k nearest and k most distant training images "
                 "(L2 in representation space), and precision@k over many queries.",
                 [("-k", "retrieval_k", int, "images per query"),
                  ("--queries", "precision_queries", int, "queries averaged in precision@k")]),
    "anomaly": ("kNN anomaly detection with ROC curves",
                "Score = mean L2 distance to the k nearest training representations. Test set: the training "
                "dataset's test split (normal) plus the --anomalies test split.",
                [("-k", "anomaly_k", int, "nearest references averaged"),
                 ("--top", "anomaly_top", int, "most anomalous images shown per run")]),
    "cluster": ("K-means, silhouette and a two-panel t-SNE",
                "K-means on training representations, exact silhouette in their dimension, t-SNE coloured by "
                "cluster and by class with the centres in black.",
                [("--clusters", "clusters", int, "K-means k"),
                 ("--tsne-points", "tsne_points", int, "training points in the t-SNE figure")]),
}


_COMMON_EVAL_FLAGS = [
    ("--seed", "seed", int, "seed of queries, splits, K-means, t-SNE"),
    ("--device", "device", str, "where the encoder runs: auto, cpu or cuda[:N]"),
    ("--precision", "precision", str, "precision of the forward pass: fp32, bf16 or fp16 (cached apart)"),
]


def _add_eval(sub) -> None:
    from viclab.config import EvalConfig

    defaults = EvalConfig()
    source_help = ("a run folder, an encoder .safetensors file, random:BACKBONE (an untrained baseline) or "
                   "pretrained:BACKBONE:FILE (a published checkpoint such as VICReg's resnet50.pth; with --dataset)")
    for name, (help, description, flags) in _EVAL_COMMANDS.items():
        p = sub.add_parser(name, help=help, description=description)
        if name == "anomaly":
            p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help + "; several: one curve each")
            p.add_argument("--anomalies", default="mnist",
                           help="dataset name or image-folder path of the anomalies (default: mnist)")
            p.add_argument("--names", nargs="+", help="legend names, one per source")
        else:
            p.add_argument("source", metavar="SOURCE", help=source_help)
        for flag, field, tp, text in [*flags, *_COMMON_EVAL_FLAGS]:
            p.add_argument(flag, dest=field, type=tp, help=f"{text} (default {getattr(defaults, field)})")
        p.add_argument("--dataset", metavar="NAME_OR_FOLDER",
                       help="evaluate on this dataset (a registered name, or an image folder with train/ and test/ "
                            "or val/) instead of the one the encoder was trained on; images are resized to its input "
                            "size")
        p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
        p.add_argument("--out", help="output folder (default: RUN/eval, or RUN/eval-DATASET with --dataset, for a "
                                     "run folder; else ./eval-NAME; a folder DATASET is its name and a hash of its "
                                     "path)")
        p.add_argument("--no-cache", action="store_true", help="recompute representations (default: cached)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_eval, task=name, fields=[f for _, f, _, _ in (*flags, *_COMMON_EVAL_FLAGS)])


def _cmd_eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from viclab.config import EvalConfig
    from viclab.eval import tasks

    cfg = replace(EvalConfig(), **{f: getattr(args, f) for f in args.fields if getattr(args, f) is not None})
    common = {"out": args.out, "data_dir": args.data_dir, "cfg": cfg, "progress": not args.no_progress,
              "use_cache": not args.no_cache, "dataset": args.dataset}
    if args.task == "anomaly":
        tasks.run_anomaly(args.sources, anomalies=args.anomalies, names=args.names, **common)
    else:
        fn = {"probe": tasks.run_probe, "plot": tasks.run_plot, "retrieve": tasks.run_retrieve,
              "cluster": tasks.run_cluster}[args.task]
        fn(args.source, **common)
    return 0


def _add_train_flags(p, preset: bool = True) -> None:
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    if preset:
        from viclab.config import PRESETS

        p.add_argument("--preset", help=f"the recipe: {', '.join(PRESETS)} (default exercise, spec §2)")
        p.add_argument("--config", help="TOML file: optional top-level preset, then [section] tables")
    p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")
    p.add_argument("--name", help="run folder name (default: <kind>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


_FLAG_HELP = {
    "pairs": "graph (positives from a fixed kNN graph: the correction) or naive (each code with itself)",
    "dataset": "dataset name or image-folder path", "data_dir": "data root (default: $VICLAB_DATA, else ~/.cache)",
    "subset": "use the first N training images (0 = all)", "dim": "representation width",
    "projector": "projector widths, e.g. 512-512-512", "graph_features": "encoder source of the fixed data space",
    "graph_k": "neighbours per image in the fixed graph", "epochs": "passes over the codes",
    "batch_size": "codes per batch", "lr": "SparseAdam rate of the codes", "projector_lr": "Adam rate of the projector",
    "probe_fraction": "share of codes the probe trains on (tested on the rest)", "seed": "seed",
    "features": "encoder source of the graph's features", "k": "neighbours per image in the kNN graph",
    "solver": "eigen-solver: arpack, lobpcg or sklearn",
}


def _add_config_flags(p, cls: type, skip: tuple[str, ...] = ()) -> list[str]:
    """One ``--field-name`` flag per plain field of a frozen config dataclass; defaults from it."""
    import dataclasses
    import typing

    hints, defaults, names = typing.get_type_hints(cls), cls(), []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        tp = {str | None: str}.get(tp, tp)
        if f.name in skip or tp not in (int, float, str):
            continue
        p.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=tp,
                       help=f"{_FLAG_HELP.get(f.name, f.name)} (default {getattr(defaults, f.name)})")
        names.append(f.name)
    return names


def _add_ablate(sub) -> None:
    from viclab.config import EigenmapsConfig, LatentConfig

    ab = sub.add_parser("ablate", help="ablations that peel VICReg back to Laplacian Eigenmaps (spec S4-S7)",
                        description="Each ablation writes a run folder that probe, plot, retrieve, anomaly, cluster "
                                    "and compare accept like any other.")
    kinds = ab.add_subparsers(dest="ablation", required=True, parser_class=_Parser)
    p = kinds.add_parser("no-variance", help="VICReg without the variance term (mu = 0, spec S4)",
                         description="viclab train with loss.var_weight=0; same flags as train.")
    _add_train_flags(p)
    p.set_defaults(func=_cmd_train, force=["loss.var_weight=0"], kind="novar")
    p = kinds.add_parser("neighbours", help="train on (image, one of its k nearest images) pairs (spec S6)",
                         description="From a trained encoder: its training representations give each image's k "
                                     "nearest images (computed once); a fresh encoder+projector then trains on "
                                     "(image, random one of them) pairs without augmentation, with the source's "
                                     "recipe.")
    p.add_argument("source", metavar="SOURCE", help="a run folder or encoder .safetensors file")
    p.add_argument("-k", type=int, default=3, help="neighbours per image (default 3)")
    p.add_argument("--epochs", type=int, default=1, help="epochs (default 1)")
    _add_train_flags(p, preset=False)
    p.set_defaults(func=_cmd_neighbours)
    for name, cls, help, skip in (
            ("latent", LatentConfig, "a free code per training image instead of an encoder (spec S5)", ()),
            ("laplacian", EigenmapsConfig, "Laplacian Eigenmaps of random-CNN features, all images (spec S7)", ())):
        p = kinds.add_parser(name, help=help, description=(cls.__doc__ or "").split("\n\n")[0])
        fields = _add_config_flags(p, cls, skip)
        p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")
        p.add_argument("--name", help=f"run folder name (default: {name}-<timestamp>); an existing run of the "
                                      "same config is continued")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_table_ablation, cls=cls, fields=fields, kind=name)


def _run_dir(args: argparse.Namespace, kind: str) -> Path:
    return Path(args.out) / (args.name or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def _cmd_neighbours(args: argparse.Namespace) -> int:
    from viclab.ablate.neighbours import VIEWS, neighbours_config
    from viclab.config import apply_mapping, parse_overrides
    from viclab.engine import train
    from viclab.engine.rundir import read_config

    overrides = list(args.overrides) + ([f"data.data_dir={args.data_dir}"] if args.data_dir else [])
    if args.resume:
        run_dir = Path(args.resume)
        cfg = read_config(run_dir)
    else:
        cfg = neighbours_config(args.source, k=args.k, epochs=args.epochs)
        run_dir = _run_dir(args, "neighbours")
    cfg = apply_mapping(cfg, parse_overrides(overrides), origin="the command line")
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress,
                   views=VIEWS[cfg.views.kind])
    _say_main(f"run folder: {result.run_dir}")
    return 0


def _cmd_table_ablation(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from viclab.ablate.eigenmaps import run_eigenmaps
    from viclab.ablate.latent import run_latent

    cfg = replace(args.cls(), **{f: getattr(args, f) for f in args.fields if getattr(args, f) is not None})
    run_dir = _run_dir(args, args.kind)
    (run_latent if args.kind == "latent" else run_eigenmaps)(cfg, run_dir, progress=not args.no_progress)
    print(f"run folder: {run_dir}")
    return 0


def _add_compare(sub) -> None:
    p = sub.add_parser("compare", help="one table: linear/kNN top-1, AUROC, silhouette of several runs",
                       description="Linear probe top-1, weighted kNN top-1, kNN-anomaly AUROC against the "
                                   "--anomalies test split and K-means silhouette, one row per run.")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="run folders, .safetensors files or random:BACKBONE")
    p.add_argument("--names", nargs="+", help="row names, one per source")
    p.add_argument("--anomalies", default="mnist", help="dataset of the anomalies (default: mnist)")
    p.add_argument("--dataset", metavar="NAME_OR_FOLDER",
                   help="evaluate every run on this dataset or image folder (default: each run's own)")
    p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    p.add_argument("--out", help="output folder (default: ./compare)")
    p.add_argument("--no-cache", action="store_true", help="recompute representations (default: cached)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from viclab.eval.compare import run_compare

    run_compare(args.sources, names=args.names, out=args.out, data_dir=args.data_dir, anomalies=args.anomalies,
                progress=not args.no_progress, use_cache=not args.no_cache, dataset=args.dataset)
    return 0


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="the whole study of spec §3 in one command, with an HTML report",
                       description="Trains VICReg, the mu = 0 ablation, the neighbour-views model, latent "
                                   "optimisation (naive and graph pairs) and Laplacian Eigenmaps, evaluates them all, "
                                   "and writes results.json and a self-contained report.html. Every stage is cached "
                                   "in the study folder: run the same command again to continue a killed study. "
                                   "Overrides: section.field=value for the training recipe (data, augment, model, "
                                   "loss, optim, train) and for latent.*, eigenmaps.*, eval.*, study.*.")
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    p.add_argument("--preset", default="cpu",
                   help="cpu (2-core CPU, under 30 minutes; default) or exercise (spec §2 exactly: use a GPU)")
    p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    p.add_argument("--out", help="study folder (default: studies/PRESET); an existing one is continued")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (one line per stage)")
    p.set_defaults(func=_cmd_study)


def _cmd_study(args: argparse.Namespace) -> int:
    from viclab.config import resolve_study
    from viclab.study import run_study

    cfg = resolve_study(args.preset, args.overrides, args.data_dir)
    run_study(cfg, args.out or Path("studies") / args.preset, progress=not args.no_progress)
    return 0


def _add_detect(sub) -> None:
    from viclab.config import DETECTOR_NAMES, PRESETS, TERM_SCORES, VIEW_RECIPES

    det = sub.add_parser("detect", help="anomaly detection on sensor images and sounds: fit on normal data, score "
                                        "new data",
                         description="Fit a detector on normal images or sound clips (a registered dataset's "
                                     "--normal-classes, or a --normal folder), save it as a folder, score test data "
                                     "with ROC and precision-recall curves, or monitor VICReg's terms over a stream "
                                     "of batches.")
    kinds = det.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = kinds.add_parser("fit", help="fit a detector on normal images and save it as a folder",
                         description="Overrides: detect.*, data.*, autoencoder.*, dcase.* for the detector; "
                                     "augment.*, model.*, loss.*, optim.*, train.*, sound.*, spec_views.* for the "
                                     "network it trains on the normal data (VICReg when no --encoder is given).")
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    p.add_argument("--detector", choices=DETECTOR_NAMES, default="knn", help="the detector (default knn)")
    p.add_argument("--encoder", help="a run folder, .safetensors encoder or random:BACKBONE (default: train VICReg "
                                     "on the normal images)")
    p.add_argument("--dataset", help="registered dataset of the normal classes (default cifar10)")
    p.add_argument("--normal-classes", help="normal classes of --dataset, names or indices, e.g. 3,5 or cat,dog "
                                            "(default: all)")
    p.add_argument("--anomaly-classes", help="classes of --dataset whose test images are the anomalies (default: "
                                             "every class that is not normal)")
    p.add_argument("--normal", help="folder of normal images (anomalib's Folder convention)")
    p.add_argument("--abnormal", help="folder of anomalous images (test only)")
    p.add_argument("--normal-test", help="folder of normal test images (default: a seeded share of --normal)")
    p.add_argument("--anomalies", help="dataset or folder whose test images are all anomalous, e.g. mnist")
    p.add_argument("--preset", choices=tuple(PRESETS), help="the training recipe of its network (default: cpu for "
                                                             "images, fsdd for FSDD, sound for other sounds)")
    p.add_argument("--views", choices=tuple(VIEW_RECIPES), help="VICReg's views: the recipe's (default), crop "
                                                                "(crop only) or crop_raw (crop only, no normalisation)")
    p.add_argument("--score", choices=TERM_SCORES, help="vicreg_terms: the quantity that ranks (default invariance)")
    p.add_argument("-k", type=int, help="knn: neighbours averaged (default 2)")
    p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    p.add_argument("--out", required=True, help="the detector folder (continued if it holds this detector)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_detect_fit)
    p = kinds.add_parser("score", help="score the test images: CSV, ROC/PR curves, threshold, most anomalous images",
                         description="Scores the test set of the first detector (its normal test images and "
                                     "anomalies, or --abnormal/--anomalies) with every detector given.")
    p.add_argument("detectors", nargs="+", metavar="DETECTOR", help="detector folders (one curve each)")
    p.add_argument("--abnormal", help="folder of anomalous images instead of the detector's")
    p.add_argument("--anomalies", help="dataset or folder of anomalies instead of the detector's")
    p.add_argument("--top", type=int, default=16, help="most anomalous images shown per detector (default 16)")
    p.add_argument("--fpr", type=float, help="calibrate the thresholds at this false-positive rate on the held-out "
                                             "normal images (default: the detector's detect.fpr)")
    p.add_argument("--data-dir", help="data root (default: the detector's, else $VICLAB_DATA)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_detect_score)
    p = kinds.add_parser("monitor", help="VICReg's three terms per batch over a stream of normal and anomalous batches",
                         description="Feeds batches of the test images to a vicreg_terms detector and plots "
                                     "invariance, variance and covariance per batch, anomalous stretches shaded "
                                     "(and logs them to TensorBoard).")
    p.add_argument("detector", metavar="DETECTOR", help="a vicreg_terms detector folder")
    p.add_argument("--stream", default="normal:20,anomalous:5,normal:10,anomalous:5",
                   help="kind:batches, ... (default normal:20,anomalous:5,normal:10,anomalous:5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per batch (default 64)")
    p.add_argument("--abnormal", help="folder of anomalous images instead of the detector's")
    p.add_argument("--anomalies", help="dataset or folder of anomalies instead of the detector's")
    p.add_argument("--seed", type=int, default=0, help="the batches' images and views (default 0)")
    p.add_argument("--data-dir", help="data root (default: the detector's, else $VICLAB_DATA)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_detect_monitor)


def _cmd_detect_fit(args: argparse.Namespace) -> int:
    from viclab.config import resolve_detect
    from viclab.detect import fit_detector

    flags = {"detect.detector": args.detector, "detect.encoder": args.encoder, "detect.score": args.score,
             "detect.k": args.k, "data.dataset": args.dataset, "data.normal": args.normal,
             "data.abnormal": args.abnormal, "data.normal_test": args.normal_test, "data.anomalies": args.anomalies,
             "data.data_dir": args.data_dir, "data.normal_classes": args.normal_classes,
             "data.anomaly_classes": args.anomaly_classes}
    if args.views and args.encoder:
        raise ViclabError("--views chooses the views of the VICReg trained on the normal images; with --encoder the "
                          "run's own views are used: drop one of the two")
    overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
    cfg = resolve_detect(overrides, views=args.views)
    preset = args.preset or default_detect_preset(cfg.data.normal or cfg.data.dataset)
    if preset is not None:
        cfg = resolve_detect(overrides, views=args.views, preset=preset)
    fit_detector(cfg, args.out, progress=not args.no_progress)
    return 0


def default_detect_preset(data: str) -> str | None:
    """The recipe a detector's network trains with when no --preset is given: the images' default
    (``None``: :class:`DetectConfig`'s), ``fsdd`` for FSDD, ``sound`` for other sounds."""
    from viclab.data import is_sound

    if not is_sound(data):
        return None
    return "fsdd" if data == "fsdd" else "sound"


def _add_sound(sub) -> None:
    s = sub.add_parser("sound", help="sound tools: resynthesise a clip from its log-mel spectrogram (Griffin-Lim)",
                       description="Sound tools (spec §4).")
    kinds = s.add_subparsers(dest="action", required=True, parser_class=_Parser)
    p = kinds.add_parser("resynth", help="a clip's log-mel spectrogram (or an autoencoder's reconstruction of it) "
                                         "back to a WAV file",
                         description="Mel inversion (non-negative least squares) then Griffin-Lim with momentum; "
                                     "writes original.wav, resynth.wav, spectrograms.png and resynth.json (spectral "
                                     "convergence, log-spectral distance). Overrides: sound.* (without --detector).")
    p.add_argument("clip", metavar="CLIP", help="a WAV, FLAC or OGG file")
    p.add_argument("overrides", nargs="*", metavar="sound.field=value", help="feature settings (without --detector)")
    p.add_argument("--detector", help="an autoencoder or dcase_ae detector folder: resynthesise its reconstruction")
    p.add_argument("--preset", default="sound", help="the training preset whose sound.* settings are used (default "
                                                     "sound: 16 kHz, the DCASE features; fsdd: 8 kHz)")
    p.add_argument("--iters", type=int, default=32, help="Griffin-Lim iterations (default 32)")
    p.add_argument("--momentum", type=float, default=0.99, help="fast Griffin-Lim momentum (default 0.99)")
    p.add_argument("--seed", type=int, default=0, help="the random initial phase (default 0)")
    from viclab.config import RESYNTH_MAX_SECONDS

    p.add_argument("--max-seconds", type=float, default=RESYNTH_MAX_SECONDS,
                   help=f"refuse longer clips (default {RESYNTH_MAX_SECONDS:g}; a second of 16 kHz audio takes about "
                        "a second of a 2-core CPU)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="accepted like every command's (it shows no bar)")
    p.set_defaults(func=_cmd_sound_resynth)


def _cmd_sound_resynth(args: argparse.Namespace) -> int:
    from viclab.config import resolve_config
    from viclab.detect.resynth import resynthesise

    if args.detector and (args.overrides or args.preset != "sound"):
        raise ViclabError("--detector fixes the sound settings (its own); drop the sound.* overrides and --preset")
    if any(not o.startswith("sound.") for o in args.overrides):
        raise ViclabError("resynth takes sound.field=value overrides only, e.g. sound.n_mels=64")
    sound = None if args.detector else resolve_config(args.preset, overrides=list(args.overrides)).sound
    if not Path(args.clip).is_file():
        raise ViclabError(f"{args.clip} is not a file; give a WAV, FLAC or OGG file")
    resynthesise(args.clip, args.out, detector=args.detector, sound=sound, n_iter=args.iters,
                 momentum=args.momentum, seed=args.seed, max_seconds=args.max_seconds)
    return 0


def _cmd_detect_score(args: argparse.Namespace) -> int:
    from viclab.detect import run_score

    if args.top < 1:
        raise ViclabError(f"--top {args.top} must be >= 1")
    run_score(args.detectors, args.out, abnormal=args.abnormal, anomalies=args.anomalies, data_dir=args.data_dir,
              top=args.top, fpr=args.fpr, progress=not args.no_progress)
    return 0


def _cmd_detect_monitor(args: argparse.Namespace) -> int:
    from viclab.detect import run_monitor

    run_monitor(args.detector, args.out, stream=args.stream, batch_size=args.batch_size, abnormal=args.abnormal,
                anomalies=args.anomalies, data_dir=args.data_dir, seed=args.seed, progress=not args.no_progress)
    return 0


def _add_split(sub) -> None:
    p = sub.add_parser("split", help="split a folder of class sub-folders into train/val/test, stratified",
                       description="SRC/<class>/<image> -> DST/{train,val,test}/<class>/<image> and DST/manifest.csv "
                                   "(source, split, class, SHA-256). Stratified per class by largest-remainder "
                                   "rounding; deterministic for a seed; identical files kept once; non-image files "
                                   "skipped and counted; an existing, non-empty DST is refused.")
    p.add_argument("src", metavar="SRC", help="folder of class sub-folders of images")
    p.add_argument("dst", metavar="DST", help="new folder to write (must not exist, or be empty)")
    p.add_argument("--ratios", nargs="+", type=float, default=[0.8, 0.1, 0.1],
                   help="train val test shares (or train test), summing to 1 (default 0.8 0.1 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the assignment (default 0)")
    p.add_argument("--mode", default="symlink", help="symlink (default), copy or hardlink")
    p.set_defaults(func=_cmd_split)


def _cmd_split(args: argparse.Namespace) -> int:
    from viclab.data.split import split_folder

    print(split_folder(args.src, args.dst, args.ratios, args.seed, args.mode).summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="viclab", description="VICReg self-supervised learning toolkit")
    from viclab import __version__

    parser.add_argument("--version", action="version", version=f"viclab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_eval(sub)
    _add_ablate(sub)
    _add_compare(sub)
    _add_study(sub)
    _add_detect(sub)
    _add_sound(sub)
    _add_split(sub)
    return parser


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """ViclabWarning as one ``viclab: warning: ...`` line; other warnings as usual."""
    if issubclass(category, ViclabWarning):
        print(f"viclab: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def guarded(fn: Callable[[], int | None]) -> int:
    """Run ``fn`` the way the CLI runs a command: a :class:`ViclabError` becomes one
    ``viclab: error: ...`` line and exit code 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        return fn() or 0
    except ViclabError as e:
        print(f"viclab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("viclab: interrupted; a training run continues with --resume RUN_DIR, a study with the same command",
              file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        parser = build_parser()
        args, rest = parser.parse_known_args(argv)
        # argparse matches positionals in one run, so overrides after an option or after another
        # positional (``ablate neighbours RUN --name x optim.lr=1e-3``) come back unmatched.
        if rest and hasattr(args, "overrides") and all("=" in r and not r.startswith("-") for r in rest):
            args.overrides = [*args.overrides, *rest]
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        return args.func(args)

    return guarded(run)
