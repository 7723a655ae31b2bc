"""Shared fixtures: small data made on the fly, and the real data when present."""

from __future__ import annotations

import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest


def write_fake_cifar(root: Path, n_train_per_batch: int = 20, n_test: int = 20, seed: int = 0) -> Path:
    """A CIFAR-10 ``cifar-10-batches-py`` folder in the official pickle format."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    meta = {b"num_cases_per_batch": n_train_per_batch, b"label_names": names, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    for name, n in [*((f"data_batch_{i}", n_train_per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        batch = {b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 b"filenames": [b"x.png"] * n}
        (folder / name).write_bytes(pickle.dumps(batch))
    return folder


def idx_gz(path: Path, arr: np.ndarray) -> None:
    """Write ``arr`` as a gzipped uint8 IDX file (the MNIST format)."""
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def write_fake_mnist(root: Path, folder: str = "MNIST", n: int = 12, seed: int = 0) -> np.ndarray:
    """An MNIST-layout test split (``FOLDER/raw/t10k-*-idx?-ubyte.gz``) of ``n`` random images."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 28, 28))
    idx_gz(raw / "t10k-images-idx3-ubyte.gz", imgs)
    idx_gz(raw / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return imgs


def _tone(rng: np.random.Generator, seconds: float, rate: int, freq: float, noise: float = 0.02) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(len(t))).astype(np.float32)


def write_fake_fsdd(root: Path, per: int = 4, seed: int = 0) -> Path:
    """FSDD's layout (``fsdd/recordings/{digit}_{speaker}_{index}.wav``, 8 kHz): its six speakers, each
    digit ``per`` times, a tone per digit (half a second or less)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    rec = root / "fsdd" / "recordings"
    rec.mkdir(parents=True)
    for speaker in ("george", "jackson", "lucas", "nicolas", "theo", "yweweler"):
        for digit in range(10):
            for i in range(per):
                sf.write(str(rec / f"{digit}_{speaker}_{i}.wav"),
                         _tone(rng, rng.uniform(0.2, 0.5), 8_000, 200 + 80 * digit), 8_000, subtype="PCM_16")
    return root


def write_fake_mimii(root: Path, ids: tuple[str, ...] = ("id_00", "id_02"), normal: int = 6, abnormal: int = 3,
                     seconds: float = 1.0, seed: int = 0) -> Path:
    """MIMII's layout (``mimii/-6_dB_<machine>/<machine>/id_XX/{normal,abnormal}/*.wav``, 16 kHz) for fan and
    slider: a hum, and an added whistle when abnormal."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    for machine, hz in (("fan", 120.0), ("slider", 90.0)):
        for mid in ids:
            for cond, n in (("normal", normal), ("abnormal", abnormal)):
                folder = root / "mimii" / f"-6_dB_{machine}" / machine / mid / cond
                folder.mkdir(parents=True)
                for i in range(n):
                    wave = _tone(rng, seconds, 16_000, hz)
                    if cond == "abnormal":
                        wave += _tone(rng, seconds, 16_000, 2500.0, 0.0)
                    sf.write(str(folder / f"{i:08d}.wav"), wave, 16_000, subtype="PCM_16")
    return root


def serve(monkeypatch, payload: bytes) -> None:
    """Make every ``urllib.request.urlopen`` of the downloads answer ``payload`` (a publisher, offline)."""
    import io

    from viclab.data import download

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(download.urllib.request, "urlopen", lambda url, timeout: Response(payload))


@pytest.fixture
def fake_cifar_root(tmp_path: Path) -> Path:
    write_fake_cifar(tmp_path)
    return tmp_path


@pytest.fixture
def real_data() -> Path:
    """``$VICLAB_DATA`` if it holds the real sets, else skip."""
    root = os.environ.get("VICLAB_DATA")
    if not root or not (Path(root) / "cifar-10-batches-py" / "batches.meta").exists():
        pytest.skip("real data absent: set VICLAB_DATA to a folder with cifar-10-batches-py/ and MNIST/raw/")
    return Path(root)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """``(run folder, data root)``: 1 epoch of small_cnn on 100 fake CIFAR images."""
    from viclab.config import resolve
    from viclab.core.context import QUIET
    from viclab.engine import train

    root = tmp_path_factory.mktemp("data")
    write_fake_cifar(root)
    write_fake_mnist(root, n=12)
    cfg = resolve("train", "cpu", overrides=["model.projector=32-32", "train.batch_size=20", "train.epochs=1",
                                           f"data.data_dir={root}", "train.eval_test=false",
                                           "train.min_steps=0"])  # 1 epoch (5 steps), not the 50-step floor
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(cfg, run, ctx=QUIET)
    return run, root


@pytest.fixture(autouse=True)
def _feature_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VICLAB_CACHE", str(tmp_path / "cache"))
