"""Every bad input answered: mistakes driven through the real ``viclab`` command.

Each case runs ``python -m viclab ...`` in a fresh process, in its own empty working
folder, and must end with exit code 2 and exactly one ``viclab: error:`` line on stderr
(warnings aside) that names the problem and the fix; no traceback; nothing left behind:
the working folder stays empty, no temporary file remains anywhere, no output folder
is created, and the input files are unchanged. The cases run a few at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_fake_cifar, write_fake_mnist

# id -> (argv, fragment naming the problem, fragment naming the fix). Placeholders are paths of
# the world below: {data} fake CIFAR-10 + MNIST, {run} a trained tiny run, {w} the world folder,
# {cwd} the case's own (empty) working folder.
CASES: dict[str, tuple[list[str], str, str]] = {
    # config values
    "gamma-zero": (["train", "loss.gamma=0"], "loss.gamma=0.0 must be > 0", "loss.var_weight=0"),
    "gamma-nan": (["train", "loss.gamma=nan"], "loss.gamma=nan is not a finite number", "give a real value"),
    "mean-nan": (["train", "augment.mean=nan,0.5,0.5"], "augment.mean=nan is not a finite number", "real value"),
    "betas": (["train", "optim.betas=0.9,1.5"], "optim.betas=(0.9, 1.5) must both lie in [0, 1)", "0.9,0.999"),
    "weight-decay": (["train", "optim.weight_decay=-1"], "optim.weight_decay=-1.0 must be >= 0", ">= 0"),
    "lr-word": (["train", "optim.lr=fast"], "optim.lr='fast' is not a valid float", "valid float"),
    "epochs-float": (["train", "train.epochs=2.5"], "train.epochs='2.5' is not a valid int", "valid int"),
    "precision": (["train", "train.precision=fp8"], "train.precision='fp8' is unknown", "use auto, fp32, bf16, fp16"),
    "huge-projector": (["train", "model.projector=100000-100000"], "needs at least", "use narrower widths"),
    "huge-images": (["train", "--preset", "cpu", "--data-dir", "{data}", "--out", "{cwd}/runs", "augment.size=20000"],
                    "holding 100 images at 20000x20000 needs at least", "use a smaller augment.size"),
    "blur-kernel": (["train", "augment.blur_kernel=101"], "augment.blur_kernel=101 is too large for 32-pixel views",
                    "at most 63"),
    "unknown-preset": (["train", "--preset", "huge"], "unknown preset 'huge'", "choose one of"),
    "unknown-backbone": (["train", "model.backbone=vit99"], "unknown backbone 'vit99'", "choose one of"),
    "unknown-key": (["train", "optim.lrr=1"], "unknown config key 'optim.lrr'", "valid: optim.name"),
    "override-syntax": (["train", "lr=3"], "cannot read override 'lr=3'", "write section.field=value"),
    "toml-not-utf8": (["train", "--config", "{w}/latin1.toml"], "is not UTF-8 text", "save it as UTF-8"),
    "toml-syntax": (["train", "--config", "{w}/broken.toml"], "cannot read config file", "broken.toml"),
    "toml-missing": (["train", "--config", "{w}/missing.toml"], "does not exist", "check the path"),
    # where results go: refused before any work
    "out-is-file": (["train", "--preset", "cpu", "--data-dir", "{data}", "--out", "{w}/a-file", "--name", "r"],
                    "lies below the file", "give a folder path"),
    "name-is-file": (["train", "--preset", "cpu", "--data-dir", "{data}", "--out", "{w}", "--name", "a-file"],
                     "run folder {w}/a-file is an existing file", "give a folder path"),
    "out-unwritable": (["train", "--preset", "cpu", "--data-dir", "{data}", "--out", "/proc/viclab-runs"],
                       "cannot be written", "choose another folder"),
    "eval-out-is-file": (["probe", "{run}", "--data-dir", "{data}", "--out", "{w}/a-file"],
                         "output folder {w}/a-file is an existing file", "give a folder path"),
    "ablate-name-is-file": (["ablate", "latent", "--data-dir", "{data}", "--out", "{w}", "--name", "a-file"],
                            "is an existing file", "give a folder path"),
    "study-out-is-file": (["study", "--data-dir", "{data}", "--out", "{w}/a-file"], "study folder", "folder path"),
    "compare-out-is-file": (["compare", "{run}", "--data-dir", "{data}", "--out", "{w}/a-file"], "existing file",
                            "give a folder path"),
    # run folders and checkpoints
    "resume-missing": (["train", "--resume", "{w}/no-such-run"], "is not a viclab run folder", "check the path"),
    "resume-latent": (["train", "--resume", "{w}/latent-run"], "is a latent-optimisation run",
                      "continue it with 'viclab ablate latent"),
    "resume-config-list": (["train", "--resume", "{w}/list-config"], "holds a list, not a config", "damaged"),
    "resume-random-checkpoint": (["train", "--resume", "{w}/random-checkpoint", "--data-dir", "{data}"],
                                 "cannot read checkpoint", "delete it to restart the run"),
    "resume-other-projector": (["train", "--resume", "{w}/other-projector", "--data-dir", "{data}"],
                               "does not fit this model", "delete it to restart the run"),
    "resume-changed-config": (["train", "--resume", "{run}", "optim.lr=0.5"], "with a different config",
                              "drop those options or start a new run"),
    # weights files
    "weights-other-arch": (["probe", "{w}/other-arch.safetensors", "--data-dir", "{data}"],
                           "does not fit this model", "not a small_cnn_pf encoder"),
    "weights-missing-tensor": (["probe", "{w}/missing-tensor.safetensors", "--data-dir", "{data}"],
                               "Missing key", "the file is damaged or was edited"),
    "weights-wrong-shape": (["probe", "{w}/wrong-shape.safetensors", "--data-dir", "{data}"], "size mismatch",
                            "damaged or was edited"),
    "weights-meta-not-json": (["probe", "{w}/meta-not-json.safetensors", "--data-dir", "{data}"],
                              "the config in its metadata is not JSON", "the file is damaged"),
    "weights-nan": (["probe", "{w}/nan.safetensors", "--data-dir", "{data}"], "holds non-finite weights",
                    "lower optim.lr"),
    "weights-not-safetensors": (["probe", "{w}/a-file", "--data-dir", "{data}"], "cannot read weights",
                                "expected a viclab .safetensors file"),
    "probe-empty-folder": (["probe", "{w}/empty"], "is not a run folder", "give a run folder"),
    # data files
    "cifar-malicious": (["probe", "random:small_cnn", "--data-dir", "{w}/evil"], "which a CIFAR-10 file never holds",
                        "replace it with the official file"),
    "cifar-list": (["probe", "random:small_cnn", "--data-dir", "{w}/cifar-list"], "holds a list",
                   "replace it with the official file"),
    "cifar-string-labels": (["probe", "random:small_cnn", "--data-dir", "{w}/cifar-strings"], "not integers",
                            "replace the file"),
    "cifar-no-meta": (["probe", "random:small_cnn", "--data-dir", "{w}/cifar-no-meta"], "has no batches.meta",
                      "copy it from the official"),
    "mnist-bad-deflate": (["anomaly", "random:small_cnn", "--data-dir", "{w}/bad-mnist"], "is damaged",
                          "replace it with the official file"),
    "folder-no-splits": (["train", "--preset", "cpu", "data.dataset=folder", "--data-dir", "{w}/plain"],
                         "has no train/ sub-folder", "{{train,val,test}}/<class>/<image>"),
    "anomalies-stray-folder": (["anomaly", "{run}", "--data-dir", "{data}", "--anomalies", "{w}/stray"],
                               "holds both 3 images and sub-folders", "put the images into class sub-folders"),
    "anomalies-bomb": (["anomaly", "{run}", "--data-dir", "{data}", "--anomalies", "{w}/bomb"],
                       "too large to decode safely", "shrink it or remove it"),
    "anomalies-missing-folder": (["anomaly", "{run}", "--data-dir", "{data}", "--anomalies", "{w}/no/such"],
                                 "image folder {w}/no/such does not exist", "check the path"),
    "anomalies-unknown": (["anomaly", "{run}", "--data-dir", "{data}", "--anomalies", "svhn"],
                          "unknown dataset 'svhn'", "or give an image folder"),
    "anomalies-training-set": (["anomaly", "{run}", "--data-dir", "{data}", "--anomalies", "cifar10"],
                               "was trained on cifar10", "choose another anomaly dataset"),
    "latent-plain-folder": (["ablate", "latent", "--dataset", "{w}/plain", "--out", "{cwd}/runs"],
                            "holds no training images", "{{train,val,test}}/<class>/<image>"),
    # evaluation options that the data cannot serve
    "anomaly-k": (["anomaly", "{run}", "--data-dir", "{data}", "-k", "5000"],
                  "anomaly_k (-k) = 5000 asks for more neighbours than the 100", "use at most 100"),
    "knn-k": (["probe", "{run}", "--data-dir", "{data}", "--knn-k", "5000"],
              "knn_k (--knn-k) = 5000 asks for more neighbours than the 100", "use at most 100"),
    "retrieve-k": (["retrieve", "{run}", "--data-dir", "{data}", "-k", "5000"], "draws one column per image",
                   "use at most 50"),
    "clusters": (["cluster", "{run}", "--data-dir", "{data}", "--clusters", "500"],
                 "needs more training images than the 100", "use at most 99"),
    "tsne-points": (["cluster", "{run}", "--data-dir", "{data}", "--tsne-points", "1"], "tsne_points=1 must be >= 5",
                    ">= 5"),
    "eval-precision": (["probe", "{run}", "--precision", "fp8"], "precision='fp8' is unknown", "use fp32, bf16"),
    "eval-device": (["probe", "{run}", "--data-dir", "{data}", "--device", "tpu:0"], "device 'tpu:0'",
                    "use auto, cpu or cuda"),
    "names-count": (["anomaly", "{run}", "--names", "a", "b"], "2 names for 1 sources", "one name per source"),
    # anomaly detection
    "detect-empty-normal": (["detect", "fit", "--normal", "{w}/empty", "--encoder", "random:small_cnn", "--out",
                             "{cwd}/d"], "the normal folder {w}/empty holds no images", "put its files there"),
    "detect-empty-abnormal": (["detect", "fit", "--normal", "{w}/plain", "--abnormal", "{w}/empty", "--encoder",
                               "random:small_cnn", "--out", "{cwd}/d"], "the abnormal folder {w}/empty holds no images",
                              "give another folder"),
    "detect-k-too-large": (["detect", "fit", "--normal", "{w}/plain", "--encoder", "random:small_cnn", "-k", "50",
                            "--out", "{cwd}/d"], "detect.k=50 is larger than the 2 normal images",
                           "detect.k=2 or fewer"),
    "detect-other-version": (["detect", "score", "{w}/old-detector", "--out", "{cwd}/s"],
                             "was written by another version of viclab", "fit it again with this version"),
    "detect-not-a-detector": (["detect", "score", "{w}/empty", "--out", "{cwd}/s"], "not a detector folder",
                              "give a folder written by 'viclab detect fit'"),
    "detect-monitor-knn": (["detect", "monitor", "{w}/knn-detector", "--out", "{cwd}/m"], "is a knn detector",
                           "give a vicreg_terms detector folder"),
    "detect-stream": (["detect", "monitor", "{w}/knn-detector", "--stream", "normal20", "--out", "{cwd}/m"],
                      "cannot read stream part 'normal20'", "e.g. normal:20"),
    "detect-unknown-class": (["detect", "fit", "--data-dir", "{data}", "--normal-classes", "kangaroo", "--out",
                              "{cwd}/d"], "normal class 'kangaroo' is not a class of cifar10", "3 cat"),
    "detect-terms-random": (["detect", "fit", "--detector", "vicreg_terms", "--normal", "{w}/plain", "--encoder",
                             "random:small_cnn", "--out", "{cwd}/d"], "vicreg_terms needs a VICReg training run folder",
                            "or none to train VICReg"),
    "detect-fpr-no-holdout": (["detect", "score", "{w}/knn-detector", "--fpr", "0.1", "--out", "{cwd}/s"],
                              "kept no held-out normal images", "fit it with data.holdout above 0"),
    "detect-views-and-encoder": (["detect", "fit", "--views", "crop", "--encoder", "{run}", "--out", "{cwd}/d"],
                                 "with --encoder the run's own views are used", "drop one of the two"),
    "detect-views": (["detect", "fit", "--views", "sepia", "--out", "{cwd}/d"], "invalid choice: 'sepia'",
                     "see 'viclab detect fit --help'"),
    # sound
    "sound-corrupt-file": (["detect", "fit", "--normal", "{w}/sounds-corrupt", "--encoder", "random:spec_cnn",
                            "--out", "{cwd}/d"], "cannot decode sound file {w}/sounds-corrupt/bad.wav",
                           "remove or replace it"),
    "sound-empty-file": (["detect", "fit", "--normal", "{w}/sounds-empty", "--encoder", "random:spec_cnn", "--out",
                          "{cwd}/d"], "sound file {w}/sounds-empty/empty.wav holds no samples", "remove it"),
    "sound-image-backbone": (["detect", "fit", "--normal", "{w}/sounds", "--preset", "cpu", "--out", "{cwd}/d"],
                             "model.backbone=small_cnn_pf takes RGB images, but the data are log-mel spectrograms",
                             "use model.backbone=spec_cnn"),
    "sound-abnormal-images": (["detect", "fit", "--normal", "{w}/sounds", "--abnormal", "{w}/plain", "--encoder",
                               "random:spec_cnn", "--out", "{cwd}/d"],
                              "the normal data are sound clips but the abnormal data are images", "give sound clips"),
    "sound-dcase-on-images": (["detect", "fit", "--detector", "dcase_ae", "--normal", "{w}/plain", "--out", "{cwd}/d"],
                              "the dcase_ae detector reconstructs log-mel frames of sound", "use the autoencoder"),
    "sound-shift": (["detect", "fit", "--detector", "shift", "--normal", "{w}/sounds", "--out", "{cwd}/d"],
                    "train.objective=shift rotates images", "for sounds use the machine_id detector"),
    "sound-machine-id-no-ids": (["detect", "fit", "--detector", "machine_id", "--normal", "{w}/sounds", "--out",
                                "{cwd}/d"], "the machine_id detector learns to name the machine ID of sound clips",
                                "use the dcase_ae or autoencoder detector"),
    "detect-layers-vit": (["detect", "fit", "--normal", "{w}/plain", "--encoder", "random:vit_tiny",
                           "detect.layers=all", "--out", "{cwd}/d"], "detect.layers=all pools every stage",
                          "use detect.layers=last"),
    "sound-channel": (["detect", "fit", "--normal", "{w}/sounds", "--encoder", "random:spec_cnn", "sound.channel=3",
                       "--out", "{cwd}/d"], "has 1 channel(s), so it has no channel 3", "sound.channel=-1"),
    "sound-fmax": (["detect", "fit", "--normal", "{w}/sounds", "sound.fmax=9000", "--out", "{cwd}/d"],
                   "sound.fmax=9000.0 must satisfy 0 <= fmin < fmax <= rate / 2 = 8000", "fmax 0 means rate / 2"),
    "resynth-knn-detector": (["sound", "resynth", "{w}/sounds/a.wav", "--detector", "{w}/knn-detector", "--out",
                              "{cwd}/r"], "is a knn detector, which does not reconstruct", "give an autoencoder"),
    "resynth-not-a-sound": (["sound", "resynth", "{w}/plain/0.png", "--out", "{cwd}/r"],
                            "cannot decode sound file {w}/plain/0.png", "remove or replace it"),
    "resynth-iters": (["sound", "resynth", "{w}/sounds/a.wav", "--iters", "0", "--out", "{cwd}/r"],
                      "--iters 0", "use at least 1 iteration"),
    # the study
    "study-anomalies-training-set": (["study", "--data-dir", "{data}", "--out", "{cwd}/s", "study.anomalies=cifar10"],
                                     "is the dataset the study trains on", "study.anomalies=mnist"),
    "study-key": (["study", "latent.colour=red"], "unknown config key 'latent.colour'", "valid: latent."),
    "study-anomalies-missing": (["study", "--data-dir", "{data}", "--out", "{cwd}/s", "study.anomalies={w}/no/such"],
                                "image folder {w}/no/such does not exist", "check the path"),
    "study-stages-of-a-vit": (["study", "--data-dir", "{data}", "--out", "{cwd}/s", "model.backbone=vit_tiny",
                               "study.sound=false"],
                              "detect.layers=all pools every stage of the encoder", "use detect.layers=last"),
}


class _Evil:
    """Unpickles into a shell command (what a malicious dataset file would hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _digest(root: Path) -> dict[str, str]:
    """Every file's hash and every folder (an empty output folder left behind counts too)."""
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() if p.is_file() else "folder"
            for p in sorted(root.rglob("*"))}


def _save_weights(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=meta)


def _make_world(w: Path, run: Path, data: Path) -> None:
    """The broken inputs, made once."""
    from PIL import Image
    from safetensors import safe_open
    from safetensors.torch import load_file

    (w / "a-file").write_text("just a file\n")
    (w / "empty").mkdir()
    (w / "latin1.toml").write_bytes('[optim]\nname = "adam" # café\n'.encode("latin-1"))
    (w / "broken.toml").write_text("[optim\nlr=")
    # CIFAR-10 folders, one defect each
    for name in ("evil", "cifar-list", "cifar-strings", "cifar-no-meta", "bad-mnist"):
        write_fake_cifar(w / name)
    batch = pickle.loads((w / "evil/cifar-10-batches-py/test_batch").read_bytes())
    (w / "evil/cifar-10-batches-py/test_batch").write_bytes(pickle.dumps({**batch, b"filenames": _Evil(w / "pwned")}))
    (w / "cifar-list/cifar-10-batches-py/test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    batch[b"labels"] = ["cat"] * len(batch[b"labels"])
    (w / "cifar-strings/cifar-10-batches-py/test_batch").write_bytes(pickle.dumps(batch))
    (w / "cifar-no-meta/cifar-10-batches-py/batches.meta").unlink()
    write_fake_mnist(w / "bad-mnist")
    gz = w / "bad-mnist/MNIST/raw/t10k-images-idx3-ubyte.gz"
    raw = bytearray(gz.read_bytes())
    raw[40:60] = bytes(20)
    gz.write_bytes(bytes(raw))
    # image folders
    for folder in ("plain", "stray", "bomb", "stray/thumbs"):
        (w / folder).mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(w / "plain" / f"{i}.png")
        Image.new("RGB", (8, 8), (i, 0, 0)).save(w / "stray" / f"{i}.png")
    Image.new("RGB", (8, 8)).save(w / "stray" / "thumbs" / "t.png")
    Image.new("1", (14000, 14000)).save(w / "bomb" / "bomb.png")  # 196 M pixels, a few kB on disk
    # sound folders
    import soundfile as sf

    tone = (0.3 * np.sin(np.arange(4000) * 0.2)).astype(np.float32)
    for folder in ("sounds", "sounds-corrupt", "sounds-empty"):
        (w / folder).mkdir()
        for i in range(3):
            sf.write(str(w / folder / f"{'abc'[i]}.wav"), tone * (i + 1) / 3, 16_000, subtype="PCM_16")
    (w / "sounds-corrupt" / "bad.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    sf.write(str(w / "sounds-empty" / "empty.wav"), np.zeros(0, dtype=np.float32), 16_000, subtype="PCM_16")
    # run folders
    from viclab.ablate.latent import run_latent
    from viclab.config import LatentConfig
    from viclab.core.context import QUIET

    run_latent(LatentConfig(pairs="naive", data_dir=str(data), dim=8, projector="16-16", batch_size=20, epochs=1),
               w / "latent-run", ctx=QUIET)
    for name in ("list-config", "random-checkpoint", "other-projector"):
        shutil.copytree(run, w / name)
        (w / name / "encoder.safetensors").unlink()  # an unfinished run, as a resume would meet it
    (w / "list-config" / "config.json").write_text("[1, 2]\n")
    (w / "random-checkpoint" / "checkpoint.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    ckpt = torch.load(w / "other-projector" / "checkpoint.pt", weights_only=True)
    ckpt["model"]["projector.0.weight"] = torch.zeros(64, 256)
    torch.save(ckpt, w / "other-projector" / "checkpoint.pt")
    # detector folders: a valid knn one, and one written by another format version
    from viclab.config import resolve
    from viclab.detect import fit_detector

    fit_detector(resolve("detect", overrides=[f"data.normal={w / 'plain'}", "detect.encoder=random:small_cnn",
                                              "data.size=8"]),
                 w / "knn-detector", ctx=QUIET)
    shutil.copytree(w / "knn-detector", w / "old-detector")
    summary = json.loads((w / "old-detector" / "detector.json").read_text())
    (w / "old-detector" / "detector.json").write_text(json.dumps({**summary, "format": "0"}))
    # weights files
    weights = run / "encoder.safetensors"
    with safe_open(str(weights), "pt") as f:
        meta = f.metadata()
    state = load_file(str(weights))
    from viclab.models import build_backbone

    _save_weights(w / "other-arch.safetensors", build_backbone("conv4")[0].state_dict(), meta)
    _save_weights(w / "missing-tensor.safetensors", {k: v for k, v in state.items() if k != "features.0.weight"}, meta)
    _save_weights(w / "wrong-shape.safetensors", {**state, "features.0.weight": torch.zeros(8, 3, 3, 3)}, meta)
    _save_weights(w / "meta-not-json.safetensors", state, {**meta, "config": "{not json"})
    _save_weights(w / "nan.safetensors", {**state, "features.0.weight": state["features.0.weight"] * np.nan}, meta)


def case_env(cache: Path, world: Path) -> dict[str, str]:
    """The cases' environment: their own cache, no default data folder, no torchrun variables."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "VICLAB_CACHE": str(cache), "VICLAB_DATA": str(world / "no-default-data"),
            "PYTHONWARNINGS": "ignore::DeprecationWarning"}


def run_cases(cases: dict[str, tuple], places: dict[str, Path], tmp_path_factory, env: dict[str, str],
              workers: int = 2) -> dict[str, tuple[int, str, Path]]:
    """Each case through ``python -m viclab`` in its own empty working folder, a few at a time:
    ``{id: (returncode, stderr, cwd)}``. A case is ``(argv, problem, fix)`` or, with environment
    variables of its own, ``(argv, problem, fix, env)``; ``{name}`` in argv is a path of ``places``
    or ``{cwd}``."""
    def one(case: str):
        argv, *_, extra = (*cases[case], {}) if len(cases[case]) == 3 else cases[case]
        cwd = tmp_path_factory.mktemp("cwd")
        args = [a.format(**places, cwd=cwd) for a in argv] + ["--no-progress"]  # stderr: messages only
        r = subprocess.run([sys.executable, "-m", "viclab", *args], cwd=cwd, env={**env, **extra},
                           capture_output=True, text=True, timeout=300)
        return r.returncode, r.stderr, cwd

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(cases, pool.map(one, cases)))


def check_one_clear_line(result: tuple[int, str, Path], problem: str, fix: str) -> None:
    """Exit code 2, exactly one ``viclab: error:`` line (warnings aside) holding ``problem`` and ``fix``,
    no traceback, no unpickling advice or colour codes, and nothing left in the working folder."""
    code, stderr, cwd = result
    lines = stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("viclab: error: ")]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code == 2 and len(errors) == 1, stderr[-3000:]
    assert all(line.startswith(("viclab: error: ", "viclab: warning: ")) for line in lines), stderr[-3000:]
    assert problem in errors[0] and fix in errors[0], errors[0]
    assert "weights_only" not in errors[0] and "\x1b" not in errors[0]  # no unpickling advice, no colour codes
    assert list(cwd.iterdir()) == [], f"left behind: {list(cwd.rglob('*'))}"


@pytest.fixture(scope="module")
def outcomes(tiny_run, tmp_path_factory):
    """Every case run once (a few processes at a time); ``{id: (returncode, stderr, cwd)}``."""
    run, data = tiny_run
    w = tmp_path_factory.mktemp("world")
    _make_world(w, run, data)
    before = {"world": _digest(w), "run": _digest(run), "data": _digest(data)}
    cache = tmp_path_factory.mktemp("cache")
    env = case_env(cache, w)
    places = {"data": data, "run": run, "w": w}

    results = run_cases(CASES, places, tmp_path_factory, env, workers=3)
    after = {"world": _digest(w), "run": _digest(run), "data": _digest(data)}
    temp = [p for root in (w, run, data, cache) for p in root.rglob("*.tmp")]
    return results, places, before, after, temp


def test_there_are_enough_distinct_cases():
    assert len(CASES) >= 40
    assert len({tuple(argv) for argv, *_ in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("case", list(CASES))
def test_mistake_is_one_clear_line(outcomes, case):
    results, places, *_ = outcomes
    _, problem, fix = CASES[case]
    check_one_clear_line(results[case], problem.format(**places), fix.format(**places))


def test_nothing_half_written_and_no_input_changed(outcomes):
    _, places, before, after, temp = outcomes
    assert temp == []
    assert after == before  # the world's files, the run and the data are untouched
    assert not (places["w"] / "pwned").exists()  # the malicious pickle never ran
