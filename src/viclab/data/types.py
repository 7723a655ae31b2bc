"""The in-memory dataset type every loader returns, and what its items are (:data:`MODALITIES`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from viclab.core.hashing import digest
from viclab.core.runtime import check_fits

# What a dataset's items are, and the dtype their tensor holds: the one place modality is defined.
MODALITIES: dict[str, torch.dtype] = {"image": torch.uint8, "spectrogram": torch.float32}


@dataclass(frozen=True)
class ImageData:
    """A whole split in memory.

    Attributes:
        images: ``(N, C, H, W)`` uint8 images (``modality="image"``), or ``(N, 1, n_mels, frames)`` float32 log-mel
            spectrograms in dB (``modality="spectrogram"``: a sound dataset's clips, :func:`viclab.data.spectrograms`).
        labels: ``(N,)`` int64 class indices.
        classes: class names, ``classes[label]``.
        files: ``(N,)`` str, each row's source: the absolute path of its image or sound file, or
            ``<dataset>:<split>:<index>`` for a registered image dataset; ``None`` where unknown.
        windows: ``(N,)`` int, the row's sliding window of its sound file (``sound.window_hop_seconds > 0``),
            so rows of one file share ``files``; ``None`` when every row is a whole file.
        modality: a key of :data:`MODALITIES`, set by the loader and checked against ``images``: every
            code path that differs for images and sound reads it.
        attrs: per-row attributes the loader knows, each ``(N,)`` str: ``machine`` and ``machine_id``
            (MIMII, DCASE), ``speaker`` and ``digit`` (FSDD); kept by :meth:`rows` and :meth:`cat`.
    """

    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    files: np.ndarray | None = None
    windows: np.ndarray | None = None
    modality: str = "image"
    attrs: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        want = MODALITIES.get(self.modality)
        if want is None:
            raise ValueError(f"unknown modality {self.modality!r}; one of {', '.join(MODALITIES)}")
        x = self.images
        if x.dtype != want or x.dim() != 4 or (self.modality == "spectrogram" and x.shape[1] != 1):
            shape = "(N, 1, n_mels, frames)" if self.modality == "spectrogram" else "(N, C, H, W)"
            raise ValueError(f"{self.modality} data must be {shape} {want}, got {tuple(x.shape)} {x.dtype}")

    def __len__(self) -> int:
        return self.images.shape[0]

    def rows(self, idx: Tensor | np.ndarray | slice) -> ImageData:
        """The rows ``idx`` (indices or a slice), with their files, windows and attributes."""
        pick = idx if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64)
        t = pick if isinstance(pick, slice) else torch.from_numpy(pick)
        return ImageData(self.images[t], self.labels[t], self.classes,
                         None if self.files is None else self.files[pick],
                         None if self.windows is None else self.windows[pick],
                         self.modality, {k: v[pick] for k, v in self.attrs.items()})

    @staticmethod
    def cat(parts: Sequence[ImageData], classes: tuple[str, ...]) -> ImageData:
        """The rows of ``parts`` (one modality) in order, labelled by ``classes``; files and windows (and each
        attribute) kept where every part has them."""
        def joined(arrays: list[np.ndarray | None]) -> np.ndarray | None:
            return np.concatenate(arrays) if all(a is not None for a in arrays) else None

        names = set.intersection(*(set(p.attrs) for p in parts))
        return ImageData(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), classes,
                         joined([p.files for p in parts]), joined([p.windows for p in parts]), parts[0].modality,
                         {k: np.concatenate([p.attrs[k] for p in parts]) for k in sorted(names)})

    def ids(self) -> np.ndarray | None:
        """Each row's identity: its ``files`` entry, with ``#w<k>`` for the k-th window of a windowed sound file."""
        if self.files is None or self.windows is None:
            return self.files
        return np.array([f"{f}#w{k}" for f, k in zip(self.files, self.windows)])

    def machine_ids(self) -> np.ndarray | None:
        """``(N,)`` each row's machine ID (``id_00``; ``fan/id_00`` when the rows hold several machine types) where
        the layout gives one (MIMII, DCASE), else ``None``."""
        if "machine_id" not in self.attrs:
            return None
        ids = self.attrs["machine_id"]
        machines = self.attrs.get("machine", np.full(len(ids), ""))
        return ids.copy() if len(set(machines)) == 1 else np.array([f"{m}/{i}" for m, i in zip(machines, ids)])

    def sources(self) -> np.ndarray | None:
        """The key a split must keep together: ``(N,)`` each row's file when rows are windows of sound files
        (a file's windows all go to one side), ``None`` when every row is its own source."""
        return None if self.windows is None else self.files

    def subset(self, n: int) -> ImageData:
        """The first ``n`` images (all if ``n`` is 0 or larger than the split)."""
        return self if n <= 0 or n >= len(self) else self.rows(slice(0, n))

    def to_rgb(self, size: int) -> ImageData:
        """3-channel ``size x size`` images: grayscale is repeated to RGB and a smaller image is zero-padded
        symmetrically (spec §2: MNIST 28x28 -> 32x32 by 2 px); a larger one is resized (bilinear, antialiased)."""
        x = self.images
        n, c, h, w = x.shape
        if c == 1:
            x = x.expand(-1, 3, -1, -1)
        if (h, w) != (size, size):
            # the output, plus the float copies interpolation makes of the input and the output
            resize = 4 * n * c * (h * w + size * size) if not (h <= size and w <= size) else 0
            check_fits(3 * n * size * size + resize, "cpu", f"holding {n} images at {size}x{size}",
                       "use a smaller augment.size")
            if h <= size and w <= size and (size - h) % 2 == 0 and (size - w) % 2 == 0:
                ph, pw = (size - h) // 2, (size - w) // 2
                x = F.pad(x, (pw, pw, ph, ph))
            else:
                x = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False).round_().clamp_(0, 255).to(torch.uint8)
        return replace(self, images=x.contiguous())


def unit_float(x: Tensor, modality: str) -> Tensor:
    """A network's float input of rows of ``modality``: images' uint8 values as floats in [0, 1] (a new tensor);
    spectrograms (dB) as they are."""
    return x.float().div_(255) if modality == "image" else x


def data_fingerprint(data: ImageData) -> str:
    """A 128-bit hash of a split's images (their shape and bytes)."""
    return digest([str(tuple(data.images.shape)), data.images], "blake2b", 16)
