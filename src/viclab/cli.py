"""The ``viclab`` command: a thin layer, each subcommand calls one library function.

Every user mistake ends as one line ``viclab: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="viclab", description="VICReg self-supervised learning toolkit")
    from viclab import __version__

    parser.add_argument("--version", action="version", version=f"viclab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    return parser


_default_showwarning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """ViclabWarning as one ``viclab: warning: ...`` line; other warnings as usual."""
    if issubclass(category, ViclabWarning):
        print(f"viclab: warning: {message}", file=sys.stderr)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    warnings.showwarning = _show_warning
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ViclabError as e:
        print(f"viclab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("viclab: interrupted; a training run continues with --resume RUN_DIR", file=sys.stderr)
        return 130
