"""Training and probing on an image folder of mixed sizes and modes, end to end through the CLI,
and evaluation on another dataset than the training one (``--dataset``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from viclab.cli import main

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def _photos(root: Path, split: str, per_class: int, seed: int) -> None:
    """Noisy images of one hue per class, at mixed sizes and modes (RGB, RGBA, palette, greyscale
    for none: grey would erase the class)."""
    rng = np.random.default_rng(seed)
    for c, rgb in COLOURS.items():
        (root / split / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = int(rng.integers(20, 90)), int(rng.integers(20, 90))
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            im = Image.fromarray(pixels)
            mode = ("RGB", "RGBA", "P")[i % 3]
            im = im.convert(mode) if mode != "P" else im.quantize(64)
            im.save(root / split / c / f"{i}.png")


def test_folder_training_and_probe_end_to_end(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    _photos(photos, "train", 24, 0)
    _photos(photos, "val", 8, 1)  # no test/: val/ is the held-out split
    assert main(["train", "--preset", "cpu", "--out", "runs", "--name", "f", "--no-progress",
                 f"data.dataset={photos}", "augment.size=16", "augment.blur_kernel=3", "model.projector=32-32",
                 "train.batch_size=24", "train.epochs=2"]) == 0
    run = tmp_path / "runs" / "f"
    assert json.loads((run / "config.json").read_text())["data"]["dataset"] == str(photos)
    assert main(["probe", str(run), "--no-progress"]) == 0
    probe = json.loads((run / "eval" / "probe.json").read_text())
    assert probe["n_train"] == 72 and probe["n_test"] == 24 and probe["dataset"] == str(photos)
    # three colours a linear probe separates even on random features; top-5 of 3 classes would be 100%: not given
    assert probe["linear"]["top1"] > 0.9 and probe["linear"]["top5"] is None


def test_a_cifar_encoder_probed_on_a_folder_of_photos(tiny_run, tmp_path, monkeypatch, capsys):
    run, data = tiny_run
    monkeypatch.chdir(tmp_path)
    photos = tmp_path / "photos"
    _photos(photos, "train", 10, 2)
    _photos(photos, "test", 4, 3)
    assert main(["probe", str(run), "--dataset", str(photos), "--data-dir", str(data), "--no-progress",
                 "--out", "transfer"]) == 0
    probe = json.loads((tmp_path / "transfer" / "probe.json").read_text())
    assert probe["dataset"] == str(photos) and probe["n_train"] == 30 and probe["n_test"] == 12
    # without --out: the run's eval-<folder>/, beside (not over) its own eval/
    assert main(["plot", str(run), "--dataset", str(photos), "--data-dir", str(data), "--no-progress"]) == 0
    assert [p.name for p in run.glob("eval-photos-*/pca.png")] == ["pca.png"]
    capsys.readouterr()
    assert main(["anomaly", str(run), "--dataset", str(photos), "--anomalies", "mnist", "--data-dir", str(data),
                 "--no-progress", "--out", "odd"]) == 0
    result = json.loads((tmp_path / "odd" / "anomaly.json").read_text())
    assert result["dataset"] == str(photos) and result["runs"][0]["n_normal"] == 12


def test_evaluation_datasets_the_encoder_cannot_take_are_refused(tiny_run, tmp_path, capsys):
    import soundfile

    run, data = tiny_run
    sounds = tmp_path / "sounds"
    for split in ("train", "test"):
        (sounds / split / "hum").mkdir(parents=True)
        soundfile.write(sounds / split / "hum" / "a.wav", np.zeros(16000, np.float32), 16000)
    assert main(["probe", str(run), "--dataset", str(sounds), "--no-progress", "--out", str(tmp_path / "o")]) == 2
    assert "takes RGB images, but the data are log-mel spectrograms" in capsys.readouterr().err
    # the normal images and the anomalies would be the same test images
    assert main(["compare", str(run), "--dataset", "mnist", "--data-dir", str(data), "--no-progress",
                 "--out", str(tmp_path / "c")]) == 2
    assert "cannot serve as the anomalies too" in capsys.readouterr().err
