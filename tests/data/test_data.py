"""Loaders vs the formats' definitions, validation by content, download behaviour."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import write_fake_cifar, write_fake_mnist
from viclab.data import download as dl
from viclab.data import load_dataset, resolve_data_dir
from viclab.errors import ViclabError


def _no_network(monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("network unreachable")

    monkeypatch.setattr(dl.urllib.request, "urlopen", refuse)


def test_cifar_folder_layout_is_row_major_chw(tmp_path):
    folder = write_fake_cifar(tmp_path)
    raw = pickle.loads((folder / "data_batch_2").read_bytes())
    train = load_dataset("cifar10", "train", tmp_path)
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert train.labels.dtype == torch.int64
    # image 0 of batch 2 is image 20 overall; pixel (c, y, x) is data[c*1024 + y*32 + x]
    img = train.images[20].numpy()
    assert img[1, 5, 7] == raw[b"data"][0][1 * 1024 + 5 * 32 + 7]
    assert train.labels[20].item() == raw[b"labels"][0]
    assert train.classes[0] == "airplane"


def test_cifar_from_tar_gz(tmp_path):
    src = tmp_path / "src"
    write_fake_cifar(src)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    test = load_dataset("cifar10", "test", root)
    assert test.images.shape == (20, 3, 32, 32)
    assert (root / "cifar-10-batches-py" / "test_batch").exists()


def test_cifar_bad_content_is_one_line_error(tmp_path):
    folder = write_fake_cifar(tmp_path)
    batch = pickle.loads((folder / "data_batch_1").read_bytes())
    batch[b"labels"][0] = 11
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch))
    with pytest.raises(ViclabError, match="outside 0..9"):
        load_dataset("cifar10", "train", tmp_path)
    (folder / "data_batch_1").write_bytes(b"garbage")
    with pytest.raises(ViclabError, match="cannot read CIFAR-10 file"):
        load_dataset("cifar10", "train", tmp_path)


def test_cifar_missing_without_network_names_the_files(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(ViclabError) as e:
        load_dataset("cifar10", "train", tmp_path)
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "\n" not in msg
    assert not list(tmp_path.glob("*.part"))


def test_mnist_padded_to_cifar_shape(tmp_path):
    imgs = write_fake_mnist(tmp_path)
    data = load_dataset("mnist", "test", tmp_path, size=32)
    assert data.images.shape == (12, 3, 32, 32)
    # spec §2: zero-pad 2 px each side, repeat to 3 channels
    assert (data.images[:, :, :2].sum() == 0) and (data.images[:, :, :, -2:].sum() == 0)
    for c in range(3):
        assert np.array_equal(data.images[:, c, 2:30, 2:30].numpy(), imgs)


def test_fashion_mnist_and_truncated_idx(tmp_path):
    write_fake_mnist(tmp_path, "FashionMNIST", n=5)
    data = load_dataset("fashion_mnist", "test", tmp_path)
    assert len(data) == 5 and data.classes[9] == "Ankle boot"
    p = tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(p.read_bytes())
    p.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(ViclabError, match="cut short"):
        load_dataset("fashion_mnist", "test", tmp_path)


def test_download_verifies_md5_and_writes_atomically(tmp_path, monkeypatch):
    payload = b"hello viclab" * 1000
    good = hashlib.md5(payload).hexdigest()

    class Resp(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: Resp(payload))
    with pytest.raises(ViclabError, match="md5"):
        dl.download(["http://x/a"], tmp_path / "a.bin", "0" * 32, hint="put a.bin here")
    assert not (tmp_path / "a.bin").exists() and not list(tmp_path.glob("*.part"))
    dl.download(["http://x/a"], tmp_path / "a.bin", good, hint="")
    assert (tmp_path / "a.bin").read_bytes() == payload


def test_image_folder_any_size_and_mode(tmp_path):
    from PIL import Image

    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.new("RGB", (50, 40), (255, 0, 0)).save(tmp_path / "cats" / "a.png")
    Image.new("L", (10, 10), 128).save(tmp_path / "cats" / "b.jpg")
    Image.new("RGBA", (64, 64), (0, 0, 255, 10)).save(tmp_path / "dogs" / "c.png")
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    data = load_dataset("folder", "train", tmp_path, size=16)
    assert data.images.shape == (3, 3, 16, 16) and data.classes == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 1]
    assert data.images[0, 0].float().mean() == 255 and data.images[0, 1:].max() == 0
    assert abs(data.images[1].float().mean().item() - 128) <= 1
    (tmp_path / "dogs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ViclabError, match="broken.png"):
        load_dataset("folder", "train", tmp_path, size=16)


def test_flat_image_folder_is_one_class(tmp_path):
    from PIL import Image

    flat = tmp_path / "odd"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(flat / f"{i}.png")
    data = load_dataset("folder", "test", flat, size=8)
    assert data.classes == ("odd",) and data.labels.tolist() == [0, 0, 0]
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViclabError, match="no images"):
        load_dataset("folder", "test", tmp_path / "empty")


def test_data_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("VICLAB_DATA", str(tmp_path / "env"))
    assert resolve_data_dir("given") == Path("given")
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("VICLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_dir(None) == tmp_path / "cache" / "viclab"


def test_unknown_dataset_and_split():
    with pytest.raises(ViclabError, match="unknown dataset"):
        load_dataset("imagenet")
    with pytest.raises(ViclabError, match="unknown split"):
        load_dataset("cifar10", "val")


def test_real_cifar_and_mnist(real_data):
    train = load_dataset("cifar10", "train", real_data)
    assert train.images.shape == (50000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    with pytest.warns(UserWarning, match="partial"):
        test = load_dataset("cifar10", "test", real_data)
    assert len(test) >= 1017 and test.labels.max() == 9
    mnist = load_dataset("mnist", "test", real_data)
    assert mnist.images.shape == (10000, 3, 32, 32) and mnist.labels.max() == 9
    # MNIST's official files are present there byte-identical: their md5 is the published one
    raw = real_data / "MNIST" / "raw"
    from viclab.data.mnist import SOURCES

    for name, md5 in SOURCES["mnist"]["md5"].items():
        assert dl.md5sum(raw / name) == md5
