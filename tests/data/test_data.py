"""Loaders vs the formats' definitions, validation by content, download behaviour."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import pickle
import re
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import serve, write_fake_cifar, write_fake_mnist
from viclab.core.errors import ViclabError
from viclab.core.hashing import file_digest
from viclab.data import download as dl
from viclab.data import load_dataset, resolve_data_dir


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


def _cifar_archive(tmp_path: Path) -> Path:
    """A data root holding only ``cifar-10-python.tar.gz`` (fake batches, the official layout)."""
    src = tmp_path / "src"
    write_fake_cifar(src)
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return root


def test_cifar_from_tar_gz(tmp_path):
    root = _cifar_archive(tmp_path)
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
    serve(monkeypatch, payload)
    with pytest.raises(ViclabError, match="md5"):
        dl.download(["http://x/a"], tmp_path / "a.bin", "0" * 32, hint="put a.bin here")
    assert not (tmp_path / "a.bin").exists() and not list(tmp_path.glob("*.part"))
    dl.download(["http://x/a"], tmp_path / "a.bin", good, hint="")
    assert (tmp_path / "a.bin").read_bytes() == payload


def _png(path: Path, mode: str = "RGB", size=(8, 8), color=(0, 0, 0)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)
    return path


def test_image_folder_any_size_and_mode(tmp_path):
    _png(tmp_path / "train" / "cats" / "a.png", "RGB", (50, 40), (255, 0, 0))
    _png(tmp_path / "train" / "cats" / "b.jpg", "L", (10, 10), 128)
    _png(tmp_path / "train" / "dogs" / "c.png", "RGBA", (64, 64), (0, 0, 255, 10))
    (tmp_path / "train" / "dogs" / "notes.txt").write_text("not an image")
    _png(tmp_path / "test" / "dogs" / "d.png")
    data = load_dataset("folder", "train", tmp_path, size=16)
    assert data.images.shape == (3, 3, 16, 16) and data.classes == ("cats", "dogs")
    assert data.labels.tolist() == [0, 0, 1]
    assert data.images[0, 0].float().mean() == 255 and data.images[0, 1:].max() == 0
    assert abs(data.images[1].float().mean().item() - 128) <= 1
    (tmp_path / "train" / "dogs" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ViclabError, match="broken.png"):
        load_dataset("folder", "train", tmp_path, size=16)


def test_one_class_mapping_for_every_split(tmp_path):
    # train has a, b, c; test lacks b: its classes keep the training indices (c is 2, not 1)
    for c in "abc":
        _png(tmp_path / "train" / c / "x.png")
    _png(tmp_path / "test" / "a" / "y.png")
    _png(tmp_path / "test" / "c" / "y.png")
    train, test = load_dataset("folder", "train", tmp_path), load_dataset("folder", "test", tmp_path)
    assert train.classes == test.classes == ("a", "b", "c")
    assert test.labels.tolist() == [0, 2]
    # a class that only the test split has has no index: refused, not renumbered
    _png(tmp_path / "test" / "zebra" / "z.png")
    with pytest.raises(ViclabError, match="zebra"):
        load_dataset("folder", "test", tmp_path)


def test_missing_split_folder_is_an_error_naming_the_layout(tmp_path):
    # Only class folders at the root: the old loader read the split names' absence as "use the
    # root", so train and test were the same images (a 100% probe).
    _png(tmp_path / "cats" / "a.png")
    _png(tmp_path / "dogs" / "b.png")
    for split in ("train", "test"):
        with pytest.raises(ViclabError, match=r"no train/ sub-folder.*\{train,val,test\}/<class>/<image>"):
            load_dataset("folder", split, tmp_path)
    _png(tmp_path / "train" / "cats" / "a.png")
    with pytest.raises(ViclabError, match="no test/ or val/ sub-folder"):
        load_dataset("folder", "test", tmp_path)


def test_hidden_folders_and_files_are_not_classes(tmp_path):
    _png(tmp_path / "train" / "cats" / "a.png")
    _png(tmp_path / "train" / ".ipynb_checkpoints" / "a-checkpoint.png")
    _png(tmp_path / "train" / "cats" / ".hidden.png")
    _png(tmp_path / "train" / "cats" / ".thumbs" / "t.png")
    data = load_dataset("folder", "train", tmp_path)
    assert data.classes == ("cats",) and len(data) == 1


def test_sixteen_bit_png_keeps_its_grey_levels(tmp_path):
    from PIL import Image

    from viclab.data import load_images

    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)  # 8-bit 0, 64, 128, 255
    path = tmp_path / "train" / "g" / "a.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(levels).save(path)
    assert Image.open(path).mode.startswith("I")
    data = load_dataset("folder", "train", tmp_path, size=4)
    # a constant image of each column's level survives bicubic resizing; compare the corners
    assert data.images[0, :, 0, 0].tolist() == [0, 0, 0] and data.images[0, :, 0, -1].tolist() == [255] * 3
    flat = tmp_path / "flat"
    for v in (0, 1000, 30000, 65535):
        Image.fromarray(np.full((4, 4), v, np.uint16)).save(_png(flat / f"{v}.png"))
    odd = load_images(str(flat), "test", size=4)
    assert odd.images[:, 0, 0, 0].tolist() == [round(v / 257) for v in (0, 1000, 30000, 65535)]


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    from PIL import Image

    _png(tmp_path / "train" / "a" / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64*64 > 2*100: Pillow's bomb error
    with pytest.raises(ViclabError, match="too large to decode safely"):
        load_dataset("folder", "train", tmp_path)


def test_plain_folder_serves_as_anomalies_only(tmp_path):
    from viclab.data import load_images

    flat = tmp_path / "odd"
    for i in range(3):
        _png(flat / f"{i}.png", color=(i, 0, 0))
    data = load_images(str(flat), "test", size=8)
    assert data.classes == ("odd",) and data.labels.tolist() == [0, 0, 0]
    assert data.images[:, 0, 0, 0].tolist() == [0, 1, 2]
    with pytest.raises(ViclabError, match="holds no training images"):
        load_images(str(flat), "train", size=8)
    # one stray sub-folder must not hide the top-level images
    _png(flat / "thumbs" / "t.png")
    with pytest.raises(ViclabError, match="both 3 images and sub-folders"):
        load_images(str(flat), "test", size=8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ViclabError, match="no images"):
        load_images(str(tmp_path / "empty"), "test")
    with pytest.raises(ViclabError, match="does not exist"):
        load_images(str(tmp_path / "no" / "such"), "test")
    with pytest.raises(ViclabError, match="unknown dataset 'svhn'"):
        load_images("svhn", "test")


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


def test_real_cifar_and_mnist(real_data, recwarn):
    train = load_dataset("cifar10", "train", real_data)
    assert train.images.shape == (50000, 3, 32, 32)
    assert torch.bincount(train.labels).tolist() == [5000] * 10
    test = load_dataset("cifar10", "test", real_data)
    # the official test_batch (publisher's MD5): all 10,000 images, 1,000 per class, no partial warning
    md5 = file_digest(real_data / "cifar-10-batches-py" / "test_batch", "md5", None)
    assert md5 == "40351d587109b95175f43aff81a1287e"
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert not [w for w in recwarn if "partial" in str(w.message)]
    mnist = load_dataset("mnist", "test", real_data)
    assert mnist.images.shape == (10000, 3, 32, 32) and mnist.labels.max() == 9
    # MNIST's official files are present there byte-identical: their md5 is the published one
    raw = real_data / "MNIST" / "raw"
    from viclab.data.published import IDX_SOURCES

    for name, md5 in IDX_SOURCES["mnist"]["md5"].items():
        assert file_digest(raw / name, "md5", None) == md5
    fashion = load_dataset("fashion_mnist", "test", real_data)
    assert torch.bincount(fashion.labels).tolist() == [1000] * 10


def test_partial_cifar_file_warns(tmp_path):
    folder = write_fake_cifar(tmp_path, n_train_per_batch=20, n_test=20)
    meta = pickle.loads((folder / "batches.meta").read_bytes())
    meta[b"num_cases_per_batch"] = 30  # the files hold 20 of the 30 images each
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.warns(UserWarning, match="holds 20 of 30 images: a partial CIFAR-10 split"):
        load_dataset("cifar10", "test", tmp_path)


def test_file_with_the_published_md5_skips_content_validation(tmp_path, monkeypatch):
    from viclab.data import published

    folder = write_fake_cifar(tmp_path)
    meta = pickle.loads((folder / "batches.meta").read_bytes())
    meta[b"num_cases_per_batch"] = 30
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    # pretend this test_batch is the publisher's: it is accepted as it is, without the partial warning
    monkeypatch.setitem(published.CIFAR_FILE_MD5, "test_batch", file_digest(folder / "test_batch", "md5", None))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_dataset("cifar10", "test", tmp_path)) == 20


class _Evil:
    """Runs a shell command when unpickled (what a malicious dataset file would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_malicious_cifar_pickle_never_runs(tmp_path):
    folder = write_fake_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = pickle.loads((folder / "test_batch").read_bytes())
    batch[b"filenames"] = _Evil(marker)
    (folder / "test_batch").write_bytes(pickle.dumps(batch))
    with pytest.raises(ViclabError, match="posix.system|os.system"):
        load_dataset("cifar10", "test", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("content,fragment", [
    (["not", "a", "dict"], "holds a list, not a CIFAR-10 batch"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["cat", "dog"]}, "not integers"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}, "labels are missing"),
    ({b"data": np.zeros((2, 100), np.uint8), b"labels": [1, 2]}, "uint8 (N, 3072)"),
    (collections.OrderedDict(), "collections.OrderedDict"),  # a module the format never uses
])
def test_cifar_pickles_of_the_wrong_shape_are_one_line_errors(tmp_path, content, fragment):
    folder = write_fake_cifar(tmp_path)
    (folder / "test_batch").write_bytes(pickle.dumps(content))
    with pytest.raises(ViclabError, match=re.escape(fragment)):
        load_dataset("cifar10", "test", tmp_path)


def test_missing_batches_meta_is_not_reported_as_a_download(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    folder = write_fake_cifar(tmp_path)
    (folder / "batches.meta").unlink()
    with pytest.raises(ViclabError, match="has no batches.meta") as e:
        load_dataset("cifar10", "train", tmp_path)
    assert "download" not in str(e.value)


def test_archive_extraction_without_tarfile_filters(tmp_path, monkeypatch):
    """Python 3.11.0-3.11.3 have no ``filter=`` argument: extraction must still work, safely."""
    root = _cifar_archive(tmp_path)
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    real = tarfile.TarFile.extractall

    def old_extractall(self, path=".", members=None, *, numeric_owner=False, **kw):
        if kw:
            raise TypeError(f"extractall() got an unexpected keyword argument {next(iter(kw))!r}")
        return real(self, path, members, numeric_owner=numeric_owner, filter="fully_trusted")

    monkeypatch.setattr(tarfile.TarFile, "extractall", old_extractall)
    assert len(load_dataset("cifar10", "test", root)) == 20
    # and a member that would escape the folder is refused
    evil_root = tmp_path / "evil"
    evil_root.mkdir()
    with tarfile.open(evil_root / "cifar-10-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-10-batches-py/../../escaped")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(ViclabError, match="unsafe member"):
        load_dataset("cifar10", "test", evil_root)
    assert not (tmp_path / "escaped").exists()


def test_mnist_with_a_corrupt_deflate_stream(tmp_path):
    write_fake_mnist(tmp_path)
    p = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    raw = bytearray(p.read_bytes())
    raw[40:60] = bytes(20)  # inside the deflate stream, past the gzip header
    p.write_bytes(bytes(raw))
    with pytest.raises(ViclabError, match="is damaged"):
        load_dataset("mnist", "test", tmp_path)
