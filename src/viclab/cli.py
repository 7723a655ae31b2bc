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

from viclab.errors import ViclabError, ViclabWarning


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise ViclabError(f"{message} (see '{self.prog} --help')")


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train VICReg and write a run folder",
                       description="Train VICReg. Config = preset, then --config TOML, then section.field=value "
                                   "overrides (e.g. optim.lr=1e-3 train.epochs=5).")
    p.add_argument("overrides", nargs="*", metavar="section.field=value", help="config overrides")
    p.add_argument("--preset", help="exercise (spec §2, default) or cpu (small net for 2-core machines)")
    p.add_argument("--config", help="TOML file: optional top-level preset, then [section] tables")
    p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")
    p.add_argument("--name", help="run folder name (default: <preset>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from viclab.config import resolve_config
    from viclab.train import train

    overrides = list(args.overrides)
    if args.data_dir:
        overrides.append(f"data.data_dir={args.data_dir}")
    if args.resume:
        from viclab.train.rundir import read_config

        run_dir = Path(args.resume)
        # Without a preset/TOML, overrides apply to the run's own config (then must not change it).
        base = None if (args.preset or args.config) else read_config(run_dir)
        cfg = resolve_config(args.preset, args.config, overrides, base=base)
    else:
        cfg = resolve_config(args.preset, args.config, overrides)
        name = args.name or f"{args.preset or 'exercise'}-{time.strftime('%Y%m%d-%H%M%S')}"
        run_dir = Path(args.out) / name
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    print(f"run folder: {result.run_dir}")
    return 0


# subcommand -> (help, description, [(flag, EvalConfig field, type, help)]); defaults come from EvalConfig.
_EVAL_COMMANDS = {
    "probe": ("linear probe and weighted kNN accuracy",
              "Linear probe (L-BFGS on standardised frozen representations, weight decay chosen on a held-out "
              "tenth) and weighted kNN classifier: top-1 and top-5 on the test set.",
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


def _add_eval(sub) -> None:
    from viclab.config import EvalConfig

    defaults = EvalConfig()
    source_help = "a run folder, an encoder .safetensors file, or random:BACKBONE (an untrained baseline)"
    for name, (help, description, flags) in _EVAL_COMMANDS.items():
        p = sub.add_parser(name, help=help, description=description)
        if name == "anomaly":
            p.add_argument("sources", nargs="+", metavar="SOURCE", help=source_help + "; several: one curve each")
            p.add_argument("--anomalies", default="mnist",
                           help="dataset name or image-folder path of the anomalies (default: mnist)")
            p.add_argument("--names", nargs="+", help="legend names, one per source")
        else:
            p.add_argument("source", metavar="SOURCE", help=source_help)
        for flag, field, tp, text in [*flags, ("--seed", "seed", int, "seed of queries, splits, K-means, t-SNE")]:
            p.add_argument(flag, dest=field, type=tp, help=f"{text} (default {getattr(defaults, field)})")
        p.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
        p.add_argument("--out", help="output folder (default: RUN/eval for a run folder, else ./eval-NAME)")
        p.add_argument("--no-cache", action="store_true", help="recompute representations (default: cached)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=_cmd_eval, task=name, fields=[f for _, f, _, _ in flags] + ["seed"])


def _cmd_eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from viclab.config import EvalConfig
    from viclab.eval import tasks

    cfg = replace(EvalConfig(), **{f: getattr(args, f) for f in args.fields if getattr(args, f) is not None})
    common = {"out": args.out, "data_dir": args.data_dir, "cfg": cfg, "progress": not args.no_progress,
              "use_cache": not args.no_cache}
    if args.task == "anomaly":
        tasks.run_anomaly(args.sources, anomalies=args.anomalies, names=args.names, **common)
    else:
        fn = {"probe": tasks.run_probe, "plot": tasks.run_plot, "retrieve": tasks.run_retrieve,
              "cluster": tasks.run_cluster}[args.task]
        fn(args.source, **common)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="viclab", description="VICReg self-supervised learning toolkit")
    from viclab import __version__

    parser.add_argument("--version", action="version", version=f"viclab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_eval(sub)
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
        print("viclab: interrupted; a training run continues with --resume RUN_DIR", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    def run() -> int:
        args = build_parser().parse_args(argv)
        return args.func(args)

    return guarded(run)
