"""Image folders, any size and mode.

Two layouts:

- a *dataset* (ImageNet-style): ``root/train/<class>/<image>`` and ``root/test/<class>/<image>``;
  one class -> index mapping for every split, taken from ``train/`` (sorted names);
- a *plain folder* (e.g. anomalies): ``root/<class>/<image>``, or images directly in ``root``
  (one class named after the folder).

Hidden files and folders (``.ipynb_checkpoints``, ``.DS_Store``) are ignored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viclab.data.types import ImageData
from viclab.errors import ViclabError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def _subfolders(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _visible(p))


def _images(folder: Path, recursive: bool) -> list[Path]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in found if f.suffix.lower() in EXTENSIONS and f.is_file()
                  and all(_visible(Path(part)) for part in f.relative_to(folder).parts))


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
        root: ``root/<class>/<image>`` (labels from the sorted sub-folder names), or a flat
            folder of images (one class named after ``root``).
        size: output side length.
        classes: a fixed class list (a dataset's mapping from its training split); then
            ``root`` must hold class sub-folders, each one of ``classes``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ViclabError(f"image folder {root} does not exist; pass a folder of images or of class sub-folders")
    found = _subfolders(root)
    top = _images(root, recursive=False)
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
        files = [(f, names.index(c)) for c in found for f in _images(root / c, recursive=True)]
    else:
        files = [(f, 0) for f in top]
    if not files:
        raise ViclabError(f"no images ({', '.join(sorted(EXTENSIONS))}) found in {root} or its class sub-folders")
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        images[i] = _rgb(f, size)
    labels = torch.tensor([c for _, c in files], dtype=torch.int64)
    return ImageData(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, names)


def load_split_folder(root: Path, split: str, size: int) -> ImageData:
    """One split of an ImageNet-style dataset ``root/{train,test}/<class>/<image>``.

    The class -> index mapping comes from ``root/train`` (sorted names) for every split,
    so a class missing from ``test/`` keeps its index.

    Raises:
        ViclabError: ``root/train`` or ``root/<split>`` is missing (never a silent fall-back to
            ``root`` itself), or ``root/<split>`` has a class that ``train/`` lacks.
    """
    root = Path(root)
    layout = f"{root}/{{train,test}}/<class>/<image>"
    if not root.is_dir():
        raise ViclabError(f"image folder {root} does not exist; an image-folder dataset has the layout {layout}")
    for needed in dict.fromkeys(("train", split)):
        if not (root / needed).is_dir():
            raise ViclabError(f"image folder {root} has no {needed}/ sub-folder; an image-folder dataset has the "
                              f"layout {layout}")
    classes = tuple(_subfolders(root / "train"))
    if not classes:
        raise ViclabError(f"{root / 'train'} has no class sub-folders; an image-folder dataset has the layout {layout}")
    return load_image_folder(root / split, size, classes)
