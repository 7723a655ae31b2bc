"""Image-folder datasets at any size: val/ and Tiny ImageNet's layout, the decoded-image cache,
parallel decoding, and the memory check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from viclab.core.cache import CacheStore
from viclab.core.errors import ViclabError
from viclab.data import folder, load_dataset, load_images


def _img(path: Path, value: int, size=(8, 8), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if mode in ("L", "P") else (value, 255 - value, 7) + ((200,) if mode == "RGBA" else ())
    Image.new(mode, size, colour).save(path)
    return path


def _tiny_imagenet(root: Path) -> dict[str, int]:
    """Tiny ImageNet's layout in miniature: train/<wnid>/images/*.JPEG with a boxes file, val/images
    labelled by val/val_annotations.txt, test/images without labels."""
    wnids = ["n01443537", "n01629819", "n01641577"]
    for i, w in enumerate(wnids):
        for j in range(3):
            _img(root / "train" / w / "images" / f"{w}_{j}.JPEG", 40 * i + j, (64, 64))
        (root / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t63\t63\n")
    truth = {}
    lines = []
    for k, w in enumerate(["n01641577", "n01443537", "n01629819", "n01443537"]):
        _img(root / "val" / "images" / f"val_{k}.JPEG", 100 + 40 * k, (64, 64))
        lines.append(f"val_{k}.JPEG\t{w}\t0\t3\t60\t61")
        truth[f"val_{k}.JPEG"] = wnids.index(w)
    (root / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    for k in range(2):
        _img(root / "test" / "images" / f"test_{k}.JPEG", 9, (64, 64))
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    return truth


def test_tiny_imagenet_val_is_read_as_labelled(tmp_path):
    truth = _tiny_imagenet(tmp_path)
    train = load_dataset("folder", "train", tmp_path, size=32)
    assert train.classes == ("n01443537", "n01629819", "n01641577") and len(train) == 9
    assert train.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # test/ has no labels (only images/): evaluations test on val/, labelled by the annotation file
    assert folder.held_out_split(tmp_path) == "val"
    test = load_images(str(tmp_path), "test", size=32)
    assert test.labels.tolist() == [truth[f"val_{k}.JPEG"] for k in range(4)]
    # each val image is a constant colour: its red channel identifies the file (JPEG moves it a little)
    assert np.allclose(test.images[:, 0, 5, 5].numpy(), [100, 140, 180, 220], atol=4)
    lines = (tmp_path / "val" / "val_annotations.txt").read_text() + "val_9.JPEG\tn99999999\t0\t0\t1\t1\n"
    (tmp_path / "val" / "val_annotations.txt").write_text(lines)
    with pytest.raises(ViclabError, match="n99999999.*train/ lacks"):
        load_images(str(tmp_path), "test", size=32)


def test_labelled_test_split_wins_over_val(tmp_path):
    for split, value in (("train", 10), ("val", 20), ("test", 30)):
        for c in ("a", "b"):
            _img(tmp_path / split / c / "x.png", value)
    assert folder.held_out_split(tmp_path) == "test"
    assert load_dataset("folder", "test", tmp_path).images[:, 0, 0, 0].tolist() == [30, 30]
    # a class folder train/ lacks (a typo) is an error, not a silent switch to val/
    _img(tmp_path / "test" / "zebra" / "x.png", 30)
    with pytest.raises(ViclabError, match="zebra"):
        load_dataset("folder", "test", tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "test" / "zebra")
    # without test/, val/ is the held-out split
    shutil.rmtree(tmp_path / "test")
    assert load_dataset("folder", "test", tmp_path).images[:, 0, 0, 0].tolist() == [20, 20]


def test_mixed_sizes_and_modes_decoded_in_parallel_match_a_serial_pil_loop(tmp_path):
    files = []
    for i, (mode, size) in enumerate([("RGB", (50, 30)), ("L", (7, 9)), ("RGBA", (64, 64)), ("P", (33, 20)),
                                      ("RGB", (100, 100)), ("L", (16, 16))]):
        files.append(_img(tmp_path / "train" / f"c{i % 2}" / f"{i}.png", 30 * i, size, mode))
    data = load_dataset("folder", "train", tmp_path, size=12)
    # reference: Pillow alone, one file at a time, in the loader's order (class, then name)
    order = sorted(files, key=lambda f: (f.parent.name, f.name))
    ref = np.stack([np.asarray(Image.open(f).convert("RGB").resize((12, 12), Image.Resampling.BICUBIC))
                    for f in order])
    assert np.array_equal(data.images.permute(0, 2, 3, 1).numpy(), ref)


def test_decoded_images_are_cached_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    for c in ("a", "b"):
        for j in range(3):
            _img(tmp_path / "train" / c / f"{j}.png", 10 * j + (c == "b"))
    first = load_dataset("folder", "train", tmp_path, size=8)
    assert len(list((CacheStore("images").default_folder()).glob("*.npy"))) == 1
    decoded = []
    real = folder._rgb
    monkeypatch.setattr(folder, "_rgb", lambda p, s: decoded.append(p) or real(p, s))
    again = load_dataset("folder", "train", tmp_path, size=8)
    assert decoded == [] and np.array_equal(again.images, first.images)  # read from the cache
    # new content under the same name and modification time: a new key, decoded again
    path = tmp_path / "train" / "a" / "1.png"
    stat = path.stat()
    _img(path, 99)
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = load_dataset("folder", "train", tmp_path, size=8)
    assert len(decoded) == 6 and changed.images[1, 0, 0, 0] == 99
    # another size is another entry
    assert load_dataset("folder", "train", tmp_path, size=4).images.shape == (6, 3, 4, 4)
    # a damaged cache file is decoded again, not read
    for f in CacheStore("images").default_folder().glob("*.npy"):
        f.write_bytes(b"garbage")
    assert np.array_equal(load_dataset("folder", "train", tmp_path, size=8).images, changed.images)


def test_a_folder_too_large_for_memory_names_what_it_needs(tmp_path, monkeypatch):
    from viclab.core import runtime

    for j in range(4):
        _img(tmp_path / "train" / "a" / f"{j}.png", j)
    monkeypatch.setattr(runtime, "available_memory", lambda device: 1000)
    with pytest.raises(ViclabError, match=r"decoding the 4 images of .* at 64x64 needs at least 0\.0 GiB.*"
                                          r"use a smaller augment.size"):
        load_dataset("folder", "train", tmp_path, size=64)
