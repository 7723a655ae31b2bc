"""Issue 27, item 6: spec A1 (kNN, CIFAR-10 test normal vs MNIST test anomalous) against training and the views.

    python benchmarks/a1_curve.py [--epochs 1,2] [--strengths 0,0.5] [--strength-epochs 1] [--subset 0]
                                  [--also weights/vicreg_cpu_cifar10.safetensors]

Trains the ``cpu`` recipe on the CIFAR-10 training images (the first ``--subset``; 0: all 50,000), once per epoch
count of ``--epochs`` (each its own run with its own cosine schedule, as a user would train) and once per colour
strength s of ``--strengths`` for ``--strength-epochs`` (``augment.jitter_p = s``, ``augment.grayscale_p = 0.2 s``;
s = 1 is the recipe's own views). On 10,000 images one or two epochs (78-156 steps) leave the probe at 25-26%, below
the random init's 47%: too short a run to ask what training does to A1, so the default is every image.

Each encoder, and a random-init one (0 epochs), is evaluated as the study evaluates:

- A1 with the encoder's output (spec A1, ``eval.anomaly_layers=last``) and with every stage pooled (``all``), each
  with its 95% bootstrap interval; the reference is all 50,000 training images, the test set all 10,000 CIFAR-10
  and all 10,000 MNIST test images;
- the linear probe top-1 on all 10,000 CIFAR-10 test images (trained on the 50,000 training images' features),
  with its 95% binomial interval.

Writes ``results/a1_curve.json`` and ``results/a1_curve.png``. Runs are kept in --work and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

from viclab.config import EVAL_DEFAULTS, resolve  # noqa: E402
from viclab.core.context import QUIET  # noqa: E402
from viclab.core.metrics import binomial_interval  # noqa: E402
from viclab.detect.anomaly import run_anomaly  # noqa: E402
from viclab.engine.vicreg import train  # noqa: E402
from viclab.eval.probe import linear_probe  # noqa: E402
from viclab.plot import figures  # noqa: E402
from viclab.represent.encode import load_source  # noqa: E402

GRAYSCALE_P = 0.2  # the recipe's (spec §2's) grayscale probability at strength 1


def trained(work: Path, subset: int, epochs: int, strength: float) -> Path:
    """The run folder of the ``cpu`` recipe for ``epochs`` at colour ``strength`` (trained unless finished)."""
    run = work / f"n{subset}-e{epochs}-s{strength:g}"
    if (run / "encoder.safetensors").exists():
        return run
    cfg = resolve("train", "cpu", overrides=[f"data.subset={subset}", f"train.epochs={epochs}",
                                             f"augment.jitter_p={strength:g}",
                                             f"augment.grayscale_p={GRAYSCALE_P * strength:g}"])
    if run.exists() and not (run / "checkpoint.pt").exists():
        shutil.rmtree(run)  # killed before its first checkpoint: nothing to continue
    train(cfg, run, resume=run.exists(), ctx=QUIET)
    return run


def evaluate(source: str, work: Path, name: str) -> dict:
    """A1 on the output and on every stage, with intervals, and the linear probe, of one encoder (kept in
    ``work/a1/<name>/row.json``: an encoder is evaluated once)."""
    done = work / "a1" / name / "row.json"
    if done.exists():
        return json.loads(done.read_text())
    row = {"source": source}
    for layers in ("last", "all"):
        run = run_anomaly([source], work / "a1" / name / layers, cfg=replace(EVAL_DEFAULTS, anomaly_layers=layers),
                          ctx=QUIET)["runs"][0]
        row[f"auroc_{layers}"], row[f"auroc_{layers}_95"] = run["auroc"], run["auroc_interval"]
    enc = load_source(source)
    train_x, test_x = enc.represent("train"), enc.represent("test")  # cached by the A1 runs above
    top1 = linear_probe(train_x.features, train_x.labels, test_x.features, test_x.labels).top1
    row["probe_top1"], row["probe_top1_95"] = top1, list(binomial_interval(top1, len(test_x.labels)))
    print(f"{name}: A1 last {row['auroc_last']:.3f} all stages {row['auroc_all']:.3f} "
          f"probe {100 * row['probe_top1']:.1f}%", flush=True)
    done.write_text(json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--subset", type=int, default=0)
    ap.add_argument("--epochs", default="1,2")
    ap.add_argument("--strengths", default="0,0.5")
    ap.add_argument("--strength-epochs", type=int, default=1)
    ap.add_argument("--also", nargs="*", default=[], metavar="ENCODER",
                    help="more encoders to evaluate beside the curves (e.g. the shipped weights)")
    ap.add_argument("--work", default=os.environ.get("VICLAB_BENCH_WORK", "/tmp/viclab-a1-curve"))
    args = ap.parse_args()
    work = Path(args.work)
    rows = {"random init": {"epochs": 0, "strength": 1.0, **evaluate("random:small_cnn_pf", work, "random")}}
    for e in (int(x) for x in args.epochs.split(",")):
        rows[f"{e} epochs"] = {"epochs": e, "strength": 1.0,
                               **evaluate(str(trained(work, args.subset, e, 1.0)), work, f"n{args.subset}-e{e}-s1")}
    for s in (float(x) for x in args.strengths.split(",")):
        e = args.strength_epochs
        rows[f"{e} epochs, strength {s:g}"] = {
            "epochs": e, "strength": s,
            **evaluate(str(trained(work, args.subset, e, s)), work, f"n{args.subset}-e{e}-s{s:g}")}
    also = {Path(a).stem: {"epochs": load_source(a).config.train.epochs, **evaluate(a, work, Path(a).stem)}
            for a in args.also}
    by_epochs = sorted((r for r in rows.values() if r["strength"] == 1.0), key=lambda r: r["epochs"])
    by_strength = sorted((r for r in rows.values() if r["epochs"] == args.strength_epochs), key=lambda r: r["strength"])
    quantities = {"A1, encoder output": "auroc_last", "A1, every stage": "auroc_all",
                  "linear probe top-1": "probe_top1"}

    def series(rs: list[dict], x: str) -> list:
        return [(n, [r[x] for r in rs], [r[q] for r in rs]) for n, q in quantities.items()]

    extra = [(f"{name} ({r['epochs']} epochs, its own recipe): {n}", [r["epochs"]], [r[q]])
             for name, r in also.items() for n, q in quantities.items()]
    figures.lines_png([("against training (colour strength 1)", "epochs", "AUROC / top-1",
                        series(by_epochs, "epochs") + extra),
                       (f"against the colour views ({args.strength_epochs} epoch)",
                        "colour strength s (jitter_p = s, grayscale_p = 0.2 s)", "AUROC / top-1",
                        series(by_strength, "strength"))], RESULTS / "a1_curve.png")
    write_result("a1_curve", {"subset": args.subset, "recipe": "cpu", "rows": rows, "also": also,
                              "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
