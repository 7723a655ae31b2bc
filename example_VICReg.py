"""Load the shipped VICReg encoder, run the linear probe, and plot retrievals for one image per class.

    python example_VICReg.py                      # data from $VICLAB_DATA, else downloaded
    python example_VICReg.py --data-dir DIR --out example-output/vicreg --weights runs/NAME

Prints the linear-probe and kNN accuracies and precision@5; writes ``probe.json``,
``retrieval_nearest.png`` and ``retrieval_farthest.png`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from viclab.cli import guarded
from viclab.eval import run_probe, run_retrieve

WEIGHTS = Path(__file__).resolve().parent / "weights" / "vicreg_cpu_cifar10.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(WEIGHTS), help="run folder or encoder .safetensors (default: shipped)")
    ap.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    ap.add_argument("--out", default="example-output/vicreg", help="output folder (default: example-output/vicreg)")
    args = ap.parse_args()
    run_probe(args.weights, args.out, args.data_dir)
    run_retrieve(args.weights, args.out, args.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
