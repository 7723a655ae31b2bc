"""The in-memory dataset type every loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from viclab.core.runtime import check_fits


@dataclass(frozen=True)
class ImageData:
    """A whole split in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8 images, or ``(N, 1, n_mels, frames)`` float32 log-mel
            spectrograms in dB (a sound dataset's clips, :func:`viclab.data.spectrograms`).
        labels: ``(N,)`` int64 class indices.
        classes: class names, ``classes[label]``.
        files: ``(N,)`` str, each row's source: the absolute path of its image or sound file, or
            ``<dataset>:<split>:<index>`` for a registered image dataset; ``None`` where unknown.
        windows: ``(N,)`` int, the row's sliding window of its sound file (``sound.window_hop_seconds > 0``),
            so rows of one file share ``files``; ``None`` when every row is a whole file.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    files: np.ndarray | None = None
    windows: np.ndarray | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def rows(self, idx: Tensor | np.ndarray | slice) -> ImageData:
        """The rows ``idx`` (indices or a slice), with their files and windows."""
        pick = idx if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        t = pick if isinstance(pick, slice) else torch.from_numpy(pick)
        return ImageData(self.images[t], self.labels[t], self.classes,
                         None if self.files is None else self.files[pick],
                         None if self.windows is None else self.windows[pick])

    def ids(self) -> np.ndarray | None:
        """Each row's identity: its ``files`` entry, with ``#w<k>`` for the k-th window of a windowed sound file."""
        if self.files is None or self.windows is None:
            return self.files
        return np.array([f"{f}#w{k}" for f, k in zip(self.files, self.windows)])

    def subset(self, n: int) -> ImageData:
        """The first ``n`` images (all if ``n`` is 0 or larger than the split)."""
        if n <= 0 or n >= len(self):
            return self
        return self.rows(slice(0, n))

    def to_rgb(self, size: int) -> ImageData:
        """3-channel ``size x size`` images: grayscale is repeated to RGB and a smaller
        image is zero-padded symmetrically (spec §2: MNIST 28x28 -> 32x32 by 2 px);
        a larger one is resized (bilinear, antialiased).
        """
        x = self.images
        n, c, h, w = x.shape
        if (h, w) != (size, size):
            # the output, plus the float copies interpolation makes of the input and the output
            resize = 4 * n * c * (h * w + size * size) if not (h <= size and w <= size) else 0
            check_fits(3 * n * size * size + resize, "cpu", f"holding {n} images at {size}x{size}",
                       "use a smaller augment.size")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        h, w = x.shape[-2:]
        if (h, w) != (size, size):
            if h <= size and w <= size and (size - h) % 2 == 0 and (size - w) % 2 == 0:
                ph, pw = (size - h) // 2, (size - w) // 2
                x = F.pad(x, (pw, pw, ph, ph))
            else:
                x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        return replace(self, images=x.contiguous())


def data_fingerprint(data: ImageData) -> str:
    """A 128-bit hash of a split's images (their shape and bytes)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(str(tuple(data.images.shape)).encode())
    h.update(data.images.contiguous().numpy().tobytes())
    return h.hexdigest()
