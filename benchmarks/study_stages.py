"""The study's sound part alone (machine sounds, spoken digits): its numbers and stage times.

Runs the two sound stages of ``viclab study --preset cpu`` (the same functions, the same config) into a
folder, without the §3 and detection stages before them, so that a change to the sound part can be
measured old against new on one machine in a quarter of the study's time.

    python benchmarks/study_sound.py --out /tmp/study-sound [--stages machines,fsdd] [--name study_sound]

Detectors already fitted in ``--out`` are reused (a stage run again only scores them).

Writes ``results/<name>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from viclab.config import resolve  # noqa: E402
from viclab.core.context import Context  # noqa: E402
from viclab.study.pipeline import _detection_stage  # noqa: E402
from viclab.study.sound import fsdd_stage, machines_stage  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for the stages' outputs")
    ap.add_argument("--name", default="study_sound", help="result file name")
    ap.add_argument("--stages", default="detect,machines,fsdd", help="which §4 stages, comma-separated")
    args = ap.parse_args()
    cfg = resolve("study", "cpu")
    out = Path(args.out)
    seconds, results = {}, {}
    stages = {"detect": _detection_stage, "machines": machines_stage, "fsdd": fsdd_stage}
    for name in args.stages.split(","):
        stage = stages[name]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        results[name] = stage(cfg, Context(progress=False))(folder)
        seconds[name] = time.perf_counter() - t0
        print(f"{name}: {seconds[name]:.0f} s")
    write_result(args.name, {"seconds": seconds, **results})


if __name__ == "__main__":
    main()
