"""Sound on real data (spec §4, §5), every detector, on the CPU.

    python benchmarks/sound.py mimii      [--machines fan,slider] [--epochs 100] [--detectors machine_id,...]
    python benchmarks/sound.py fsdd       [--digits 0,...,9] [--epochs 20]
    python benchmarks/sound.py speaker    [--speaker theo] [--epochs 5]
    python benchmarks/sound.py probe      [--held-out theo,yweweler] [--epochs 10]
    python benchmarks/sound.py throughput [--repeats 3]

``mimii``: DCASE 2020 Task 2's protocol on the MIMII sample in ``$VICLAB_DATA/mimii`` (fan and slider,
IDs 00/02/04/06, 10 normal and 5 abnormal 10-second clips per ID): per machine type one model per
detector, fitted on a seeded half of each ID's normal clips (5 per ID, 20 per type, of which a
tenth is held out to calibrate the threshold), tested per ID on its other 5 normal clips and its 5
abnormal ones; AUC and pAUC (FPR <= 0.1) per ID, and per type with a 95% bootstrap interval.
``fsdd``: one digit normal against the other nine (FSDD's split: recordings 0-4 of each speaker
and digit are test clips), mean AUROC over digits. ``speaker``: five speakers normal, the sixth the
anomaly. ``probe``: VICReg on the digits of four speakers, a linear probe tested on the two others,
against a random-init encoder. ``throughput``: clips per second of decoding and of log-mel features.
Each writes ``results/sound_<name>.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result  # noqa: E402

from viclab.config import resolve  # noqa: E402
from viclab.core.context import Context  # noqa: E402
from viclab.data import load_sound, resolve_data_dir, spectrograms  # noqa: E402
from viclab.detect.protocols import held_out_speaker, machine_sounds, one_digit, probe_digits  # noqa: E402

DCASE_ANCHOR = {"fan": 0.65, "slider": 0.85}  # the DCASE 2020 baseline's development-set AUC (~1,000 clips per ID)
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
NO_BARS = Context(progress=False)  # lines printed, no progress bars


def _work(args, name: str) -> Path:
    return Path(args.work) / name


def _setup(args) -> dict:
    """The arguments that produced a result (for its JSON)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "work")}


def mimii(args) -> None:
    base = resolve("detect", "sound", overrides=["data.dataset=mimii", f"train.epochs={args.epochs}",
                                                 f"detect.views={args.views}", f"autoencoder.epochs={args.ae_epochs}",
                                                 f"dcase.epochs={args.dcase_epochs}", *args.set])
    result = machine_sounds(base, args.machines.split(","), _work(args, "mimii"), NO_BARS,
                            detectors=args.detectors.split(",") if args.detectors else None)
    for machine, r in result.items():
        print(f"\n{machine} (test: {r['test']['normal']} normal, {r['test']['anomalous']} abnormal clips; "
              f"DCASE baseline published: {DCASE_ANCHOR.get(machine)})")
        for name, per in r["per_id"].items():
            a = r["all"][name]
            print(f"{name:>26}: " + " ".join(f"{i} {m['auroc']:.2f}/{m['pauc']:.2f}" for i, m in per.items())
                  + f" | mean {r['mean_id_auroc'][name]:.3f}/{r['mean_id_pauc'][name]:.3f} | all {a['auroc']:.3f} "
                  f"[{a['auroc_interval'][0]:.2f}, {a['auroc_interval'][1]:.2f}]")
    name = "sound_mimii" + (f"_{args.detectors.replace(',', '_')}" if args.detectors else "")
    write_result(name, {"setup": _setup(args), "dcase_baseline_auc": DCASE_ANCHOR,
                                 "machines": result})


def fsdd(args) -> None:
    base = resolve("detect", "fsdd", overrides=[f"train.epochs={args.epochs}", f"detect.views={args.views}",
                                                f"autoencoder.epochs={args.ae_epochs}",
                                                f"dcase.epochs={args.dcase_epochs}", *args.set])
    result = one_digit(base, args.digits.split(","), _work(args, "fsdd"), NO_BARS)
    for name, mean in result["mean_auroc"].items():
        per = [r["metrics"][name]["auroc"] for r in result["per_class"]]
        print(f"{name:>26}: mean AUROC {mean:.3f}  per digit " + " ".join(f"{a:.2f}" for a in per))
    seconds = [r["seconds"] for r in result["per_class"]]
    write_result("sound_fsdd_digits", {"setup": _setup(args), **result,
                                       "median_seconds_per_digit": statistics.median(seconds)})


def speaker(args) -> None:
    base = resolve("detect", "fsdd", overrides=[f"train.epochs={args.epochs}", f"detect.views={args.views}",
                                                f"autoencoder.epochs={args.ae_epochs}",
                                                f"dcase.epochs={args.dcase_epochs}", *args.set])
    result = held_out_speaker(base, args.speaker, SPEAKERS, _work(args, f"speaker-{args.speaker}"), NO_BARS)
    write_result("sound_fsdd_speaker", {"setup": _setup(args), **result})


def probe(args) -> None:
    recipe = resolve("train", "fsdd", overrides=[f"train.epochs={args.epochs}", *args.set])
    result = probe_digits(recipe, args.held_out.split(","), _work(args, "probe"), NO_BARS)
    print(f"VICReg top-1 {result['vicreg']['top1']:.1%} top-5 {result['vicreg']['top5']:.1%} | random init top-1 "
          f"{result['random']['top1']:.1%} top-5 {result['random']['top5']:.1%} ({result['train_clips']} training, "
          f"{result['test_clips']} test clips; VICReg trained in {result['train_seconds']:.0f}s)")
    write_result("sound_fsdd_probe", {"setup": _setup(args), **result})


def throughput(args) -> None:
    """Clips per second: decoding (read, mono, resample, cut; no cache) and log-mel (batches of 256)."""
    root = resolve_data_dir(None)
    rows = {}
    for name, preset, data in (("fsdd", "fsdd", "fsdd"), ("mimii", "sound", "mimii")):
        cfg = resolve("train", preset).sound
        t_dec, t_mel, n = [], [], 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            clips = load_sound(data, "train", root, cfg, use_cache=False)
            t1 = time.perf_counter()
            spectrograms(clips, cfg)
            t_dec.append(t1 - t0)
            t_mel.append(time.perf_counter() - t1)
            n = len(clips)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as cache:
            os.environ["VICLAB_CACHE"] = cache
            load_sound(data, "train", root, cfg)  # writes the cache
            t1 = time.perf_counter()
            load_sound(data, "train", root, cfg)  # reads it (content hashes of the files + one .npy)
            t_cached = time.perf_counter() - t1
        rows[name] = {"clips": n, "seconds_of_audio": n * cfg.clip_seconds, "rate": cfg.rate,
                      "decode_clips_per_s": n / statistics.median(t_dec),
                      "logmel_clips_per_s": n / statistics.median(t_mel),
                      "cached_clips_per_s": n / t_cached,
                      "audio_seconds_per_s": n * cfg.clip_seconds / (statistics.median(t_dec)
                                                                     + statistics.median(t_mel))}
        r = rows[name]
        print(f"{name}: {n} clips of {cfg.clip_seconds:g} s at {cfg.rate} Hz: decode {r['decode_clips_per_s']:.0f} "
              f"clips/s, log-mel {r['logmel_clips_per_s']:.0f} clips/s, from the cache {r['cached_clips_per_s']:.0f} "
              f"clips/s ({r['audio_seconds_per_s']:.0f} s of audio per second decoded and featurised)")
    write_result("sound_throughput", {"threads": torch.get_num_threads(), "repeats": args.repeats, "rows": rows})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    work = os.environ.get("VICLAB_BENCH_WORK", "/tmp/viclab-sound-bench")
    for name, fn, epochs in (("mimii", mimii, 100), ("fsdd", fsdd, 20), ("speaker", speaker, 5),
                             ("probe", probe, 10), ("throughput", throughput, 0)):
        p = sub.add_parser(name)
        p.set_defaults(func=fn)
        p.add_argument("--work", default=work, help="detector folders (a finished one is reused)")
        p.add_argument("--set", nargs="*", default=[], help="more section.field=value overrides")
        if epochs:
            p.add_argument("--epochs", type=int, default=epochs, help="VICReg epochs")
            p.add_argument("--views", type=int, default=8, help="vicreg_terms views per clip")
            p.add_argument("--ae-epochs", type=int, default=epochs, help="convolutional autoencoder epochs")
            p.add_argument("--dcase-epochs", type=int, default=100, help="DCASE baseline epochs (its own: 100)")
    sub.choices["mimii"].add_argument("--machines", default="fan,slider")
    sub.choices["mimii"].add_argument("--detectors", help="only these, e.g. machine_id,dcase_ae (default: every one)")
    sub.choices["fsdd"].add_argument("--digits", default=",".join(map(str, range(10))))
    sub.choices["speaker"].add_argument("--speaker", default="theo")
    sub.choices["probe"].add_argument("--held-out", default="theo,yweweler")
    sub.choices["throughput"].add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    np.random.seed(0)
    args.func(args)


if __name__ == "__main__":
    main()
