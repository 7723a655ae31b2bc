"""A generic image folder: ``root/<class>/<image>`` (ImageNet-style), any size and mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from viclab.data.types import ImageData
from viclab.errors import ViclabError

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


def load_image_folder(root: Path, size: int) -> ImageData:
    """Load every image under ``root``'s class sub-folders as RGB ``size x size`` uint8.

    Classes are the sorted sub-folder names; a folder without sub-folders is one
    class of its own images. Images are converted to RGB (palette,
    grayscale, alpha all handled by Pillow) and resized with bicubic antialiasing.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise ViclabError(f"image folder {root} does not exist; pass a folder of class sub-folders")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).rglob("*"))
             if f.suffix.lower() in EXTENSIONS]
    if not classes:  # a flat folder of images (e.g. anomalies): one class named after it
        classes = [root.name]
        files = [(f, 0) for f in sorted(root.iterdir()) if f.suffix.lower() in EXTENSIONS]
    if not files:
        raise ViclabError(f"no images ({', '.join(sorted(EXTENSIONS))}) found in {root} or its class sub-folders")
    images = np.empty((len(files), size, size, 3), dtype=np.uint8)
    for i, (f, _) in enumerate(files):
        try:
            with Image.open(f) as im:
                images[i] = np.asarray(im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
        except (OSError, UnidentifiedImageError) as e:
            raise ViclabError(f"cannot read image {f} ({e}); remove or replace it") from None
    labels = torch.tensor([c for _, c in files], dtype=torch.int64)
    return ImageData(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, tuple(classes))
