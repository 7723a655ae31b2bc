"""viclab split: stratified, reproducible, duplicate-free splits of a class-folder tree."""

from __future__ import annotations

import csv
import errno
import hashlib
import os
from pathlib import Path

import pytest

from viclab.core.errors import ViclabError
from viclab.data import split as split_module
from viclab.data.folder import load_split_folder
from viclab.data.split import apportion, split_folder


def _png(path: Path, value: int) -> Path:
    """A tiny PNG whose bytes differ for every ``value`` below 256**3."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (value % 256, value // 256 % 256, value // 65536)).save(path)
    return path


def _tree(src: Path, sizes: dict[str, int], reverse: bool = False) -> Path:
    """``src/<class>/img<i>.png``, distinct images; ``reverse`` creates them in the opposite order."""
    items = [(c, i) for c, n in sizes.items() for i in range(n)]
    for j, (c, i) in enumerate(reversed(items) if reverse else items):
        p = _png(src / c / f"img{i:02d}.png", 1000 * list(sizes).index(c) + i)
        if reverse:  # other modification times too
            os.utime(p, (1_000_000 + j, 1_000_000 + j))
    return src


def _manifest(dst: Path) -> list[dict[str, str]]:
    with open(dst / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _placed(dst: Path) -> dict[str, list[str]]:
    """Split -> the files placed there (paths relative to the split folder)."""
    return {s.name: sorted(p.relative_to(s).as_posix() for p in s.rglob("*") if not p.is_dir())
            for s in dst.iterdir() if s.is_dir()}


def _leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".tmp-" in p.name]


def test_apportion_by_hand():
    assert apportion(10, (0.8, 0.1, 0.1)) == [8, 1, 1]
    # quotas 3.5, 1.75, 1.75: floors 3, 1, 1; the 2 left go to the largest remainders (val, test)
    assert apportion(7, (0.5, 0.25, 0.25)) == [3, 2, 2]
    # quotas 2, 1.5, 1.5: one left, remainders tie: the earlier split (val) gets it
    assert apportion(5, (0.4, 0.3, 0.3)) == [2, 2, 1]
    # quotas 5.6, 0.7, 0.7: floors 5, 0, 0; remainders 0.6 < 0.7 = 0.7
    assert apportion(7, (0.8, 0.1, 0.1)) == [5, 1, 1]
    assert apportion(2, (0.8, 0.1, 0.1)) == [2, 0, 0]
    assert apportion(3, (0.5, 0.5)) == [2, 1]
    # 0.7 * 10 is 7.000000000000001 in floats: exact decimals keep it 7/3
    assert apportion(10, (0.7, 0.3)) == [7, 3]
    assert apportion(0, (0.8, 0.1, 0.1)) == [0, 0, 0]
    for n in range(60):
        assert sum(apportion(n, (0.7, 0.2, 0.1))) == n


@pytest.mark.parametrize("ratios, expected", [
    ((0.8, 0.1, 0.1), {"a": (8, 1, 1), "b": (5, 1, 1)}),
    ((0.5, 0.25, 0.25), {"a": (5, 3, 2), "b": (3, 2, 2)}),
])
def test_every_class_is_split_by_the_ratios(tmp_path, ratios, expected):
    src = _tree(tmp_path / "src", {"a": 10, "b": 7})
    report = split_folder(src, tmp_path / "dst", ratios=ratios)
    assert report.splits == ("train", "val", "test") and report.classes == ("a", "b")
    placed = _placed(tmp_path / "dst")
    for c, sizes in expected.items():
        for s, n in zip(report.splits, sizes):
            assert report.counts[s][c] == n
            assert len([p for p in placed[s] if p.startswith(f"{c}/")]) == n
    # every image placed exactly once
    everything = [p for s in report.splits for p in placed[s]]
    assert sorted(everything) == sorted(set(everything)) and len(everything) == 17
    assert report.skipped == report.duplicates == 0


def test_two_ratios_make_train_and_test(tmp_path):
    src = _tree(tmp_path / "src", {"a": 5, "b": 4})
    report = split_folder(src, tmp_path / "dst", ratios=(0.6, 0.4))
    assert report.splits == ("train", "test")
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["manifest.csv", "test", "train"]
    assert report.counts == {"train": {"a": 3, "b": 2}, "test": {"a": 2, "b": 2}}


def test_same_seed_same_assignment_whatever_the_order_and_times(tmp_path):
    sizes = {"a": 10, "b": 7, "c": 5}
    one = _tree(tmp_path / "one", sizes)
    two = _tree(tmp_path / "two", sizes, reverse=True)
    split_folder(one, tmp_path / "d1", seed=3, ratios=(0.6, 0.2, 0.2))
    split_folder(two, tmp_path / "d2", seed=3, ratios=(0.6, 0.2, 0.2))
    split_folder(one, tmp_path / "d3", seed=3, ratios=(0.6, 0.2, 0.2))
    assert _manifest(tmp_path / "d1") == _manifest(tmp_path / "d2") == _manifest(tmp_path / "d3")
    split_folder(one, tmp_path / "d4", seed=4, ratios=(0.6, 0.2, 0.2))
    other = _manifest(tmp_path / "d4")
    assert [r["split"] for r in other] != [r["split"] for r in _manifest(tmp_path / "d1")]
    assert [r["source"] for r in other] == [r["source"] for r in _manifest(tmp_path / "d1")]


def test_duplicates_in_a_class_are_kept_once(tmp_path):
    src = _tree(tmp_path / "src", {"a": 4, "b": 3})
    same = (src / "a" / "img00.png").read_bytes()
    (src / "a" / "copy.png").write_bytes(same)
    (src / "a" / "sub").mkdir()
    (src / "a" / "sub" / "again.png").write_bytes(same)
    report = split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5))
    assert report.duplicates == 2
    rows = {r["source"]: r for r in _manifest(tmp_path / "dst")}
    # kept: the first by sorted relative path ("a/copy.png" < "a/img00.png" < "a/sub/again.png")
    assert rows["a/copy.png"]["split"] in ("train", "test")
    assert rows["a/img00.png"]["split"] == rows["a/sub/again.png"]["split"] == "duplicate"
    placed = [tmp_path / "dst" / s / p for s, files in _placed(tmp_path / "dst").items() for p in files]
    assert sum(p.read_bytes() == same for p in placed) == 1
    assert report.counts["train"]["a"] + report.counts["test"]["a"] == 4  # 6 files, 2 copies dropped


def test_same_bytes_in_two_classes_is_an_error(tmp_path):
    src = _tree(tmp_path / "src", {"a": 4, "b": 4})
    (src / "b" / "stray.png").write_bytes((src / "a" / "img02.png").read_bytes())
    with pytest.raises(ViclabError) as e:
        split_folder(src, tmp_path / "dst")
    msg = str(e.value)
    assert "a/img02.png" in msg and "b/stray.png" in msg and "\n" not in msg
    assert not (tmp_path / "dst").exists()


def _nonempty_dst(tmp_path):
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    return {}


@pytest.mark.parametrize("setup, kwargs, match", [
    (_nonempty_dst, {}, "exists and is not empty; choose a new DST or remove it"),
    (None, {"ratios": (0.8, 0.1, 0.2)}, "sum to 1"),
    (None, {"ratios": (1.1, -0.1)}, "positive"),
    (None, {"ratios": (0.25, 0.25, 0.25, 0.25)}, "2 ratios"),
    (None, {"ratios": (1.0,)}, "2 ratios"),
    (None, {"mode": "move"}, "unknown mode 'move'"),
    (None, {"seed": -1}, "seed"),
    (lambda p: (p / "src" / "empty").mkdir() or (p / "src" / "empty" / "x.txt").write_text("x"),
     {}, "class 'empty' .* has no images"),
    (lambda p: _png(p / "src" / "tiny" / "one.png", 99_999) and _png(p / "src" / "tiny" / "two.png", 99_998),
     {}, "class 'tiny' has 2 images: split 'val' would get none .*at least 7 images"),
    (lambda p: _png(p / "src" / "loose.png", 99_999), {}, "outside its class sub-folders"),
    (None, {"dst": "src/a/out"}, "inside the source folder"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, setup, kwargs, match):
    _tree(tmp_path / "src", {"a": 10, "b": 10})
    if setup:
        setup(tmp_path)
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    dst = tmp_path / kwargs.pop("dst", "dst")
    with pytest.raises(ViclabError, match=match) as e:
        split_folder(tmp_path / "src", dst, **kwargs)
    assert "\n" not in str(e.value)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before


def test_source_must_be_a_folder_of_class_folders(tmp_path):
    with pytest.raises(ViclabError, match="does not exist"):
        split_folder(tmp_path / "nowhere", tmp_path / "dst")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(ViclabError, match="is a file"):
        split_folder(tmp_path / "file.png", tmp_path / "dst")
    _png(tmp_path / "flat" / "a.png", 1)
    with pytest.raises(ViclabError, match="holds 1 images but no class sub-folders; put the images into one folder"):
        split_folder(tmp_path / "flat", tmp_path / "dst")
    assert not (tmp_path / "dst").exists()


def test_non_images_skipped_and_counted_hidden_ignored(tmp_path):
    src = _tree(tmp_path / "src", {"a": 4, "b": 4})
    (src / "README.md").write_text("about")
    (src / "a" / "notes.txt").write_text("x")
    (src / "b" / "deep").mkdir()
    (src / "b" / "deep" / "labels.json").write_text("{}")
    (src / "a" / ".DS_Store").write_bytes(b"x")
    _png(src / "a" / ".ipynb_checkpoints" / "hidden.png", 5000)
    _png(src / ".trash" / "c.png", 5001)
    _png(src / "b" / "deep" / "nested.PNG", 5002)
    report = split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5))
    assert report.skipped == 3 and report.classes == ("a", "b")
    sources = {r["source"] for r in _manifest(tmp_path / "dst")}
    assert "b/deep/nested.PNG" in sources and len(sources) == 9
    assert not any("hidden" in s or "notes" in s for s in sources)


@pytest.mark.parametrize("mode", ["symlink", "copy", "hardlink"])
def test_modes_place_readable_files_with_the_bytes(tmp_path, mode):
    src = _tree(tmp_path / "src", {"a": 4, "b": 4})
    _png(src / "a" / "sub" / "deep.png", 7000)
    split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5), mode=mode)
    rows = [r for r in _manifest(tmp_path / "dst")]
    assert len(rows) == 9
    for r in rows:
        placed, original = tmp_path / "dst" / r["split"] / r["source"], src / r["source"]
        assert placed.read_bytes() == original.read_bytes()
        assert placed.is_symlink() == (mode == "symlink")
        if mode == "symlink":
            assert Path(os.readlink(placed)).is_absolute()
        assert placed.samefile(original) == (mode != "copy")


def test_hardlink_refused_is_clear_and_leaves_nothing(tmp_path, monkeypatch):
    src = _tree(tmp_path / "src", {"a": 4, "b": 4})

    def refuse(a, b):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(split_module.os, "link", refuse)
    with pytest.raises(ViclabError, match="cross-device.*--mode copy"):
        split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5), mode="hardlink")
    assert not (tmp_path / "dst").exists() and not _leftovers(tmp_path)


def test_manifest_hashes_and_awkward_names(tmp_path):
    src = _tree(tmp_path / "src", {"a": 3, "b": 3})
    _png(src / "a" / 'x, "quoted".png', 8000)
    _png(src / "b" / "two\nlines.png", 8001)
    report = split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5))
    assert report.manifest == tmp_path / "dst" / "manifest.csv"
    rows = _manifest(tmp_path / "dst")
    assert list(rows[0]) == ["source", "split", "class", "sha256"]
    assert {r["source"] for r in rows} >= {'a/x, "quoted".png', "b/two\nlines.png"}
    for r in rows:
        assert r["class"] == r["source"].split("/")[0]
        assert r["sha256"] == hashlib.sha256((src / r["source"]).read_bytes()).hexdigest()
        assert r["sha256"] == hashlib.sha256((tmp_path / "dst" / r["split"] / r["source"]).read_bytes()).hexdigest()
    assert [r["source"] for r in rows] == sorted(r["source"] for r in rows)
    assert not _leftovers(tmp_path)


def test_an_empty_dst_folder_is_filled(tmp_path):
    src = _tree(tmp_path / "src", {"a": 2, "b": 2})
    (tmp_path / "dst").mkdir()
    report = split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5))
    assert report.dst == tmp_path / "dst" and report.total("train") == report.total("test") == 2
    assert "train 2, test 2 images of 2 classes" in report.summary()


def test_result_loads_with_the_folder_loader(tmp_path):
    src = _tree(tmp_path / "src", {"a": 10, "b": 7})
    report = split_folder(src, tmp_path / "dst")
    for s in ("train", "val", "test"):
        data = load_split_folder(tmp_path / "dst", s, 4)
        assert data.classes == ("a", "b") and len(data) == report.total(s)
        assert data.labels.tolist() == [0] * report.counts[s]["a"] + [1] * report.counts[s]["b"]


def test_a_failed_write_leaves_no_dst_and_no_temp(tmp_path, monkeypatch):
    src = _tree(tmp_path / "src", {"a": 4, "b": 4})
    calls = []

    def full(a, b):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    real = split_module.shutil.copy2
    monkeypatch.setattr(split_module.shutil, "copy2", full)
    with pytest.raises(ViclabError, match="No space left on device.*run the same command again"):
        split_folder(src, tmp_path / "dst", ratios=(0.5, 0.5), mode="copy")
    assert not (tmp_path / "dst").exists() and not _leftovers(tmp_path)
