"""Load the shipped VICReg encoder, run kNN anomaly detection (CIFAR-10 normal, MNIST anomalous), plot the ROC.

    python example_Anomaly.py                     # data from $VICLAB_DATA, else downloaded
    python example_Anomaly.py --anomalies fashion_mnist --weights runs/NAME random:small_cnn
    python example_Anomaly.py --layers last       # spec A1 on the encoder's output alone

The features are every stage of the encoder, pooled (``--layers all``): as VICReg trains, its output loses the
low-level statistics that tell a grey digit from a photograph (AUROC 0.61 on the output with the shipped weights,
0.97 on every stage); its earlier stages keep them (docs/detection.md#a1).

Prints the AUROC of each encoder; writes ``roc.png``, ``top_anomalies.png``, the scores
(``.npy`` and ``.csv``) and ``anomaly.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from viclab.cli import guarded
from viclab.config import EVAL_DEFAULTS
from viclab.detect.anomaly import run_anomaly

WEIGHTS = Path(__file__).resolve().parent / "weights" / "vicreg_cpu_cifar10.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", nargs="+", default=[str(WEIGHTS)],
                    help="run folders, .safetensors files or random:BACKBONE (default: the shipped weights)")
    ap.add_argument("--anomalies", default="mnist", help="dataset or image folder of anomalies (default: mnist)")
    ap.add_argument("--data-dir", help="data root (default: $VICLAB_DATA, else ~/.cache/viclab)")
    ap.add_argument("--out", default="example-output/anomaly", help="output folder (default: example-output/anomaly)")
    ap.add_argument("--layers", choices=("all", "last"), default="all",
                    help="every stage of the encoder pooled (default), or its output alone (spec A1)")
    args = ap.parse_args()
    run_anomaly(args.weights, args.out, args.data_dir, anomalies=args.anomalies,
                cfg=replace(EVAL_DEFAULTS, anomaly_layers=args.layers))
    return 0


if __name__ == "__main__":
    sys.exit(guarded(main))
