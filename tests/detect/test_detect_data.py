"""A detector's data: splits by source file (windows of one recording never leak across fit, held-out
and normal test), class choices that contradict each other refused, and each test row traced to its file.

Rows are identified by their content (each file a tone of its own, each image a colour of its own),
never by the code's own bookkeeping, so a leak or a mislabelled row shows whatever the code reports.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_fake_mimii
from viclab.config import resolve
from viclab.core.errors import ViclabError
from viclab.detect import load_normal, load_test

sf = pytest.importorskip("soundfile")
RATE = 8_000
# Eight tones far apart on the mel scale: the loudest mel band of a row names its file.
TONES = (200.0, 450.0, 750.0, 1100.0, 1600.0, 2200.0, 2900.0, 3600.0)
SOUND = ["sound.rate=8000", "sound.clip_seconds=0.2", "sound.n_fft=256", "sound.hop_length=64", "sound.n_mels=32"]


def _tones(folder: Path, seconds: float, tones=TONES) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * RATE)) / RATE
    paths = []
    for i, hz in enumerate(tones):
        paths.append(folder / f"{i}.wav")
        sf.write(str(paths[-1]), (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), RATE, subtype="FLOAT")
    return paths


def _band(images: torch.Tensor) -> np.ndarray:
    """Each spectrogram's loudest mel band (over its frames)."""
    return images[:, 0].mean(-1).argmax(-1).numpy()


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """8 normal files of 1 s cut into 5 windows each (0.2 s every 0.2 s), and 2 abnormal files."""
    root = tmp_path_factory.mktemp("windowed")
    normal = _tones(root / "normal", 1.0)
    _tones(root / "abnormal", 1.0, tones=(300.0, 1300.0))
    cfg = resolve("detect", "sound", overrides=[f"data.normal={root / 'normal'}",
                                                f"data.abnormal={root / 'abnormal'}", *SOUND,
                                                "sound.window_hop_seconds=0.2", "data.test_share=0.25",
                                                "data.holdout=0.34"])
    return cfg, normal


def test_windows_of_one_recording_never_straddle_fit_holdout_and_normal_test(windowed):
    cfg, _ = windowed
    fit, holdout = load_normal(cfg.data, cfg.recipe.sound)
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    normal_test = test.data.images[torch.from_numpy(test.labels == 0)]
    sides = {"fit": _band(fit.images), "holdout": _band(holdout.images), "test": _band(normal_test)}
    every = np.concatenate(list(sides.values()))
    # the reference: 8 files, 5 windows each, each file its own band
    assert len(every) == 40 and sorted(np.unique(every, return_counts=True)[1]) == [5] * 8
    files = {k: set(v.tolist()) for k, v in sides.items()}
    assert not files["fit"] & files["holdout"] and not files["fit"] & files["test"]
    assert not files["holdout"] & files["test"]
    # round(0.25 * 8) = 2 files are normal test, round(0.34 * 6) = 2 of the other 6 held out: whole files
    assert (len(files["test"]), len(files["holdout"]), len(files["fit"])) == (2, 2, 4)
    assert (len(sides["test"]), len(sides["holdout"]), len(sides["fit"])) == (10, 10, 20)


def test_the_split_of_whole_files_is_unchanged(tmp_path):
    """Images (and sound without windows) split exactly as before: the published numbers stay put."""
    from PIL import Image

    folder = tmp_path / "good"
    folder.mkdir()
    for i in range(20):
        Image.new("RGB", (8, 8), (10 * i, 0, 0)).save(folder / f"{i:02d}.png")
    cfg = resolve("detect", overrides=[f"data.normal={folder}", "data.size=8", "data.seed=3"]).data
    fit, holdout = load_normal(cfg)
    test = load_test(cfg, abnormal=str(folder))
    # the reference: the seeded permutations of dbc74cf (test share, then holdout of the rest), by colour
    perm = np.random.default_rng(3).permutation(20)
    pool, normal_test = np.sort(perm[:16]), np.sort(perm[16:])
    perm = np.random.default_rng(4).permutation(16)
    fit_ref, held_ref = pool[np.sort(perm[:14])], pool[np.sort(perm[14:])]
    colour = lambda d: (d.images[:, 0, 0, 0].numpy() // 10).tolist()  # noqa: E731
    assert colour(fit) == fit_ref.tolist() and colour(holdout) == held_ref.tolist()
    assert (test.data.images[test.labels == 0][:, 0, 0, 0] // 10).tolist() == normal_test.tolist()


def test_a_class_both_normal_and_anomalous_is_refused(fake_cifar_root):
    for normal, odd in (("cat", "cat,dog"), ("3", "dog,cat"), ("cat,dog", "5")):
        cfg = resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}", f"data.normal_classes={normal}",
                                           f"data.anomaly_classes={odd}"]).data
        with pytest.raises(ViclabError, match="is both a normal and an anomaly class; drop it from") as e:
            load_test(cfg)
        assert ("'dog'" if normal == "cat,dog" else "'cat'") in str(e.value)
        with pytest.raises(ViclabError, match="both a normal and an anomaly class"):
            load_normal(cfg)  # before anything is fitted


def test_disjoint_class_choices_still_work(fake_cifar_root):
    cfg = resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}", "data.normal_classes=cat",
                                       "data.anomaly_classes=dog,truck"]).data
    test = load_test(cfg)
    raw = pickle.loads((fake_cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes())
    labels = np.array(raw[b"labels"])
    assert int((test.labels == 0).sum()) == int((labels == 3).sum())
    assert int((test.labels == 1).sum()) == int(np.isin(labels, (5, 9)).sum())


# --- per-row identity (the interface scores.csv and per-machine AUCs are built on) ----------------


def test_folder_rows_name_their_absolute_files(tmp_path, monkeypatch):
    from PIL import Image

    for name, n in (("good", 10), ("bad", 3)):
        (tmp_path / name).mkdir()
        for i in range(n):
            Image.new("RGB", (8, 8), (10 * i + (100 if name == "bad" else 0), 0, 0)).save(tmp_path / name / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # relative folders given: the files are still absolute
    cfg = resolve("detect", overrides=["data.normal=good", "data.abnormal=bad", "data.size=8"]).data
    fit, holdout = load_normal(cfg)
    test = load_test(cfg)
    for data, files in ((fit, fit.files), (holdout, holdout.files), (test.data, test.files)):
        red = data.images[:, 0, 0, 0].numpy()
        expect = [str(tmp_path / ("bad" if r >= 100 else "good") / f"{(r % 100) // 10}.png") for r in red]
        assert list(files) == expect
    assert test.groups is None and len(test.files) == len(test.origin)


def test_windowed_rows_name_file_and_window(windowed):
    cfg, paths = windowed
    fit, _ = load_normal(cfg.data, cfg.recipe.sound)
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    band_of_file = dict(zip(map(str, paths), _band(torch.stack([_one_window(p, cfg) for p in paths]))))
    for row, (name, band) in enumerate(zip(fit.ids(), _band(fit.images))):
        path, window = name.rsplit("#w", 1)
        assert band_of_file[path] == band and int(window) == fit.windows[row]
    normal_ids = test.files[test.labels == 0]
    assert len(set(normal_ids)) == 10 and all(f.split("#w")[1] in {"0", "1", "2", "3", "4"} for f in normal_ids)


def _one_window(path: Path, cfg) -> torch.Tensor:
    """The first window of one file alone: a reference spectrogram of that file."""
    from viclab.data.sounds import cut, decode
    from viclab.signal import logmel_batches

    clip = cut(decode(path, RATE), cfg.recipe.sound.clip_samples)
    return logmel_batches(torch.from_numpy(clip), cfg.recipe.sound, "cpu")[0]


def test_registered_image_rows_are_dataset_split_index(fake_cifar_root):
    cfg = resolve("detect", overrides=[f"data.data_dir={fake_cifar_root}", "data.normal_classes=cat"]).data
    test = load_test(cfg)
    raw = pickle.loads((fake_cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes())
    images = raw[b"data"].reshape(-1, 3, 32, 32)
    for row, name in enumerate(test.files):
        dataset, split, index = name.split(":")
        assert (dataset, split) == ("cifar10", "test")
        assert np.array_equal(test.data.images[row].numpy(), images[int(index)])


def test_machine_sounds_carry_their_machine_id(tmp_path):
    write_fake_mimii(tmp_path, seconds=0.5)
    cfg = resolve("detect", "sound", overrides=[f"data.data_dir={tmp_path}", "data.dataset=mimii",
                                                "data.normal_classes=normal", "sound.machines=fan",
                                                "sound.test_share=0.5", *SOUND])
    test = load_test(cfg.data, sound=cfg.recipe.sound)
    assert [g for g in test.groups] == [Path(f).parent.parent.name for f in test.files]
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in test.files)
    both = resolve("detect", "sound", overrides=[f"data.data_dir={tmp_path}", "data.dataset=mimii",
                                                 "data.normal_classes=normal", "sound.test_share=0.5", *SOUND])
    mixed = load_test(both.data, sound=both.recipe.sound)  # two machine types: their IDs kept apart
    assert [g for g in mixed.groups] == [f"{Path(f).parents[2].name}/{Path(f).parent.parent.name}"
                                         for f in mixed.files]
