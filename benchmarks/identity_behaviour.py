"""Fingerprints of every detector's scores and of a tiny study, to compare code versions.

Drives the ``viclab`` command (the interface both versions share) on data this script writes with a
fixed seed: every image detector and every sound detector fitted on a fixed folder and scored
(``scores.csv``, every row), ``viclab anomaly`` on a fixed run, and a tiny whole study (every number
of ``results.json`` except wall times and
weights-file hashes, whose metadata hold temporary paths). Run it once per version and compare:

    python benchmarks/identity_behaviour.py --src /tmp/base/src --out before.json
    python benchmarks/identity_behaviour.py --src src --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import write_fake_cifar, write_fake_fsdd, write_fake_mimii, write_fake_mnist  # noqa: E402
from tests.study.conftest import TINY as STUDY_TINY  # noqa: E402

SOUND = ["sound.rate=8000", "sound.clip_seconds=0.5", "sound.n_fft=256", "sound.hop_length=64", "sound.n_mels=32",
         "model.projector=32-32", "train.batch_size=8", "train.epochs=2", "detect.views=3", "detect.precision=fp32",
         "autoencoder.widths=8,16", "autoencoder.latent=8", "autoencoder.epochs=3", "autoencoder.batch_size=8",
         "dcase.hidden=16", "dcase.epochs=3", "dcase.batch_size=64"]
IMAGE = ["data.size=8", "model.projector=32-32", "train.batch_size=8", "train.epochs=2", "detect.views=3",
         "detect.precision=fp32", "autoencoder.widths=8,16", "autoencoder.latent=8", "autoencoder.epochs=3",
         "autoencoder.batch_size=8"]
TIMES = ("seconds", "time", "wall")
# A weights file's SHA-256 covers its metadata, which holds the run's config with absolute (temporary) paths:
# two runs of one version differ there. The weights themselves are compared by benchmarks/identity.py.
SKIP = (*TIMES, "weights_sha256")


def pictures(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, n in (("good", 40), ("bad", 12)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
            if name == "bad":
                pixels[:4] = 40 * (i % 6)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def sounds(root: Path) -> Path:
    import soundfile as sf

    rng = np.random.default_rng(0)
    for name, n, odd in (("normal", 40, False), ("abnormal", 12, True)):
        (root / name).mkdir(parents=True)
        for i in range(n):
            t = np.arange(int(rng.uniform(0.5, 0.8) * 8000)) / 8000
            f0 = rng.uniform(110, 130)
            wave = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.02 * rng.standard_normal(len(t))
            if odd:
                wave += 0.3 * np.sin(2 * np.pi * rng.uniform(2000, 3000) * t)
            sf.write(str(root / name / f"{i}.wav"), wave.astype(np.float32), 8000, subtype="PCM_16")
    return root


def viclab(src: Path, env: dict, *args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "viclab", *args], env={**env, "PYTHONPATH": str(src)},
                         capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"viclab {' '.join(args)} failed:\n{run.stderr[-2000:]}")


def scores_sha(folder: Path) -> str:
    with open(folder / "scores.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "file"} | {"file": Path(r.get("file", "")).name}
                for r in csv.DictReader(f)]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def numbers(tree, path=""):
    """Every (key path, value) leaf of a JSON tree, wall times and absolute paths left out."""
    if isinstance(tree, dict):
        for k, v in sorted(tree.items()):
            if not any(t in k.lower() for t in SKIP):
                yield from numbers(v, f"{path}.{k}")
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from numbers(v, f"{path}[{i}]")
    elif not (isinstance(tree, str) and tree.startswith("/")):
        yield path, tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", required=True, help="the version's src/ folder")
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a JSON written by another version: report equality")
    ap.add_argument("--skip-study", action="store_true")
    args = ap.parse_args()
    src = Path(args.src).resolve()
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = {**os.environ, "VICLAB_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1", "VICLAB_DATA": str(tmp)}
        img, snd = pictures(tmp / "pictures"), sounds(tmp / "sounds")
        fitted = []
        for det, extra in (("knn", ["detect.encoder=random:small_cnn"]), ("knn", []), ("mahalanobis", []),
                           ("vicreg_terms", []), ("autoencoder", [])):
            name = f"image-{det}-{'random' if extra else 'vicreg'}"
            viclab(src, env, "detect", "fit", "--detector", det, "--normal", str(img / "good"), "--abnormal",
                   str(img / "bad"), "--out", str(tmp / name), *IMAGE, *extra)
            viclab(src, env, "detect", "score", str(tmp / name), "--out", str(tmp / f"s-{name}"))
            out[name] = scores_sha(tmp / f"s-{name}")
            fitted.append(tmp / name)
        viclab(src, env, "detect", "score", *map(str, fitted), "--out", str(tmp / "s-images"))
        out["image-all-together"] = scores_sha(tmp / "s-images")
        for det in ("knn", "mahalanobis", "vicreg_terms", "autoencoder", "dcase_ae"):
            name = f"sound-{det}"
            viclab(src, env, "detect", "fit", "--preset", "sound", "--detector", det, "--normal",
                   str(snd / "normal"), "--abnormal", str(snd / "abnormal"), "--out", str(tmp / name), *SOUND)
            viclab(src, env, "detect", "score", str(tmp / name), "--out", str(tmp / f"s-{name}"))
            out[name] = scores_sha(tmp / f"s-{name}")
        if not args.skip_study:
            write_fake_cifar(tmp), write_fake_mnist(tmp, n=12), write_fake_fsdd(tmp)
            write_fake_mimii(tmp, ids=("id_00", "id_02", "id_04", "id_06"), normal=10)
            viclab(src, env, "study", "--preset", "cpu", "--out", str(tmp / "study"), "--no-progress", *STUDY_TINY)
            results = json.loads((tmp / "study" / "results.json").read_text())
            leaves = list(numbers(results))
            out["study-results"] = hashlib.sha256(json.dumps(leaves).encode()).hexdigest()[:16]
            out["study-leaves"] = str(len(leaves))
            (Path(args.out).with_suffix(".study.json")).write_text(json.dumps(leaves, indent=0) + "\n")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    for k, v in out.items():
        print(f"{k:28s} {v}")
    if args.compare:
        old = json.loads(Path(args.compare).read_text())
        diff = [k for k in out if k in old and old[k] != out[k]]
        print("all identical" if not diff else f"DIFFERENT: {', '.join(diff)}")


if __name__ == "__main__":
    main()
