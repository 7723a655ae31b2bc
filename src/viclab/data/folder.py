"""Image folders, any size and mode, decoded once (in parallel) into a uint8 cache.

Two layouts:

- a *dataset* (ImageNet-style): ``root/train/<class>/<image>`` with ``root/val/...`` and/or ``root/test/...``
  beside it; one class -> index mapping for every split, taken from ``train/`` (sorted names). Tiny ImageNet's
  ``val/`` (``val/images/*`` labelled by ``val/val_annotations.txt``) is read as labelled. The held-out split that
  evaluations call ``test`` is ``test/`` when it is labelled (class sub-folders), else ``val/`` (Tiny ImageNet's
  ``test/`` has no labels);
- a *plain folder* (e.g. anomalies): ``root/<class>/<image>``, or images directly in ``root`` (one class named
  after the folder).

Hidden files and folders (``.ipynb_checkpoints``, ``.DS_Store``) are ignored. Decoded images are cached in the
``images`` namespace of :class:`~viclab.core.cache.CacheStore`, keyed by every file's path, label and content
hash, the size and the decoding code's version, so a changed folder is decoded again, never read stale.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL
import torch

from viclab.core.cache import CacheStore
from viclab.core.errors import ViclabError
from viclab.core.hashing import file_digest
from viclab.core.runtime import check_fits
from viclab.data.types import ImageData

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
ANNOTATIONS = "val_annotations.txt"  # Tiny ImageNet's labels of val/images/


def visible(p: Path) -> bool:
    return not p.name.startswith(".")


def subfolders(root: Path) -> list[str]:
    """The names of the visible folders in ``root``, sorted."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and visible(p))


def hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` or a folder between it and ``root`` is hidden (its name starts with ``.``)."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def listed(folder: Path, extensions: set[str], recursive: bool = True) -> list[Path]:
    """The files under ``folder`` whose extension is in ``extensions`` (hidden ones ignored), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in found if f.suffix.lower() in extensions and f.is_file() and not hidden(f, folder))


def _rgb(path: Path, size: int) -> np.ndarray:
    """Decode one image to ``(size, size, 3)`` uint8 RGB (bicubic, antialiased)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.mode in _SIXTEEN_BIT:
                # 16-bit greyscale: Pillow's convert("RGB") would clip every value above 255 to white.
                a = np.asarray(im, dtype=np.float64) / 257.0
                im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
            elif im.mode == "F":
                raise ViclabError(f"image {path} holds floating-point pixels (mode F); save it as an 8- or "
                                  "16-bit image")
            return np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
    except Image.DecompressionBombError as e:
        raise ViclabError(f"image {path} is too large to decode safely ({e}); shrink it or remove it") from None
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise ViclabError(f"cannot read image {path} ({e}); remove or replace it") from None


def load_image_folder(root: Path, size: int, classes: tuple[str, ...] | None = None) -> ImageData:
    """Load every image of a plain folder as RGB ``size x size`` uint8.

    Args:
        root: ``root/<class>/<image>`` (labels from the sorted sub-folder names), or a flat folder of images (one
            class named after ``root``).
        size: output side length.
        classes: a fixed class list (a dataset's mapping from its training split); then ``root`` must hold class
            sub-folders, each one of ``classes``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ViclabError(f"image folder {root} does not exist; pass a folder of images or of class sub-folders")
    found = subfolders(root)
    top = listed(root, EXTENSIONS, recursive=False)
    if found and top:
        raise ViclabError(f"{root} holds both {len(top)} images and sub-folders ({', '.join(found[:5])}); put the "
                          "images into class sub-folders, or move the sub-folders out")
    if classes is not None:
        extra = [c for c in found if c not in classes]
        if extra or top:
            what = f"class folders {', '.join(extra)}" if extra else "images outside class folders"
            raise ViclabError(f"{root} has {what} that the training split does not: a class missing from train/ "
                              "has no index; add it to train/ or remove it")
        names = classes
    else:
        names = tuple(found) if found else (root.name,)
    if found:
        files = [(f, names.index(c)) for c in found for f in listed(root / c, EXTENSIONS)]
    else:
        files = [(f, 0) for f in top]
    if not files:
        raise ViclabError(f"no images ({', '.join(sorted(EXTENSIONS))}) found in {root} or its class sub-folders")
    return decode_files(files, root, size, names)


def _file_hash(path: Path) -> str:
    try:
        return file_digest(path)
    except OSError as e:
        raise ViclabError(f"cannot read image {path} ({e.strerror or e}); remove or replace it") from None


def parallel(fn, items: list, desc: str, threads: int | None = None, disable: bool | None = None) -> list:
    """``[fn(x) for x in items]`` in ``threads`` threads (default: one per core, at most 16; Pillow's decoders and
    resampling, hashlib, libsndfile and soxr release the GIL), with a progress bar (``disable=None``: on a terminal)."""
    from tqdm import tqdm

    with ThreadPoolExecutor(max_workers=threads or min(16, os.cpu_count() or 1)) as pool:
        return list(tqdm(pool.map(fn, items), total=len(items), desc=desc, disable=disable, leave=False,
                         dynamic_ncols=True, mininterval=1.0))


def decode_files(files: list[tuple[Path, int]], root: Path, size: int, classes: tuple[str, ...],
                 use_cache: bool = True, threads: int | None = None) -> ImageData:
    """Decode labelled image files to RGB ``size x size`` uint8, once: later calls read the cache.

    Args:
        files: ``(path, label)`` pairs, in the order of the result.
        root: the folder they come from (cache keys use paths relative to it; messages name it).
        size: output side length.
        classes: class names, ``classes[label]``.
        use_cache: read and write the ``images`` cache (:class:`~viclab.core.cache.CacheStore`).
        threads: decoding threads (default: one per core, at most 16).

    Returns:
        :class:`ImageData` with ``(N, 3, size, size)`` uint8 images and each one's absolute path (``files``).

    Raises:
        ViclabError: the decoded images would not fit in memory (with the memory they need), or a file cannot be
            read or decoded.
    """
    n = len(files)
    # the decoded array and its channels-first copy
    check_fits(2 * n * size * size * 3, "cpu", f"decoding the {n} images of {root} at {size}x{size}",
               "use a smaller augment.size, or split the folder (viclab split) and use fewer images")
    if use_cache:
        hashes = parallel(lambda fc: _file_hash(fc[0]), files, f"hashing {root.name}", threads)
        store = CacheStore("images")
        # Pillow's version too: another release (or its libjpeg) may decode or resample differently.
        # The header ends with a newline, then one line per file (the key of entries already cached).
        lines = [f"{f.relative_to(root) if f.is_relative_to(root) else f}|{c}|{digest}\n"
                 for (f, c), digest in zip(files, hashes)]
        path = store.path([PIL.__version__, str(size), "|".join(classes)], ["\n", *lines])
        # an unwritable cache only costs the decoding again next time
        images = store.read_or_compute(path, lambda: _decode(files, root, size, threads), (n, size, size, 3),
                                       np.uint8, unwritable=lambda e: None)
    else:
        images = _decode(files, root, size, threads)
    return ImageData(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                     torch.tensor([c for _, c in files], dtype=torch.int64), classes,
                     files=np.array([os.path.abspath(f) for f, _ in files], dtype=str))


def _decode(files: list[tuple[Path, int]], root: Path, size: int, threads: int | None) -> np.ndarray:
    """``(N, size, size, 3)`` uint8 RGB of every file, decoded in threads."""
    n = len(files)
    images = np.empty((n, size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        images[i] = _rgb(files[i][0], size)

    parallel(one, list(range(n)), f"decoding {n} images of {root.name} at {size}px", threads)
    return images


def _labelled(folder: Path, classes: tuple[str, ...]) -> bool:
    """Whether a split folder holds labels: Tiny ImageNet's annotation file, or class sub-folders other than Tiny
    ImageNet's unlabelled ``images/`` (a class ``train/`` lacks then fails the load, never switches to ``val/``)."""
    if (folder / ANNOTATIONS).is_file():
        return True
    found = subfolders(folder)
    return bool(found) and (found != ["images"] or "images" in classes)


def held_out_split(root: Path) -> str:
    """The split a dataset folder's evaluations test on: ``test`` when ``test/`` is labelled, else ``val``."""
    classes = tuple(subfolders(root / "train")) if (root / "train").is_dir() else ()
    if (root / "test").is_dir() and (_labelled(root / "test", classes) or not (root / "val").is_dir()):
        return "test"
    return "val" if (root / "val").is_dir() else "test"


def _annotated(folder: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """Tiny ImageNet's ``val/``: ``images/<file>`` labelled by ``val_annotations.txt`` (``file<TAB>wnid...``)."""
    files = []
    for n, line in enumerate((folder / ANNOTATIONS).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2:
            raise ViclabError(f"{folder / ANNOTATIONS} line {n} is not 'file<TAB>class...'; fix or remove the line")
        name, wnid = parts[0].strip(), parts[1].strip()
        if wnid not in classes:
            raise ViclabError(f"{folder / ANNOTATIONS} line {n} names class {wnid!r}, which train/ lacks; a class "
                              "missing from train/ has no index")
        path = folder / "images" / name
        if not path.is_file():
            path = folder / name
        if not path.is_file():
            raise ViclabError(f"{folder / ANNOTATIONS} line {n} names {name}, which is not in {folder}/images; "
                              "restore the file or remove the line")
        files.append((path, classes.index(wnid)))
    if not files:
        raise ViclabError(f"{folder / ANNOTATIONS} lists no images")
    return files


def load_split_folder(root: Path, split: str, size: int) -> ImageData:
    """One split of an ImageNet-style dataset ``root/{train,val,test}/<class>/<image>``, classes indexed as in
    ``root/train`` (so a class missing from ``test/`` keeps its index); ``split="test"`` reads :func:`held_out_split`.

    Raises:
        ViclabError: ``root/train`` or the split's folder is missing (never a silent fall-back to ``root`` itself),
            or the split has a class that ``train/`` lacks.
    """
    root = Path(root)
    layout = f"{root}/{{train,val,test}}/<class>/<image>"
    if not root.is_dir():
        raise ViclabError(f"image folder {root} does not exist; an image-folder dataset has the layout {layout}")
    if split == "test":
        split = held_out_split(root)
    for needed in dict.fromkeys(("train", split)):
        if not (root / needed).is_dir():
            what = f"{needed}/" if needed == "train" else "test/ or val/"
            raise ViclabError(f"image folder {root} has no {what} sub-folder; an image-folder dataset has the "
                              f"layout {layout}")
    classes = tuple(subfolders(root / "train"))
    if not classes:
        raise ViclabError(f"{root / 'train'} has no class sub-folders; an image-folder dataset has the layout {layout}")
    if (root / split / ANNOTATIONS).is_file():
        return decode_files(_annotated(root / split, classes), root / split, size, classes)
    return load_image_folder(root / split, size, classes)
