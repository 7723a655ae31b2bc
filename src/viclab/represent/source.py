"""The one type every evaluation reads: a source of representations.

A :class:`Source` is a frozen encoder or a stored table (latent codes, Laplacian
Eigenmaps); its :meth:`Source.represent` gives the representations of a dataset split
either way, so no caller branches on which. Sources are made by
:func:`viclab.represent.encode.load_source`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from viclab.config import Config
from viclab.data import ImageData


def existing_dir(folder: str | None) -> str | None:
    """``folder`` when it exists here, else ``None``: a run's recorded data folder may be another machine's."""
    return folder if folder and Path(folder).is_dir() else None


@dataclass(frozen=True)
class Representations:
    """One split of a dataset and its representations.

    Attributes:
        features: ``(N, D)`` float32.
        data: the images ``(N, 3, H, W)`` uint8, labels ``(N,)`` and class names.
        dataset: registry name or folder path the split came from.
        split: ``"train"`` or ``"test"``.
    """

    features: np.ndarray
    data: ImageData
    dataset: str
    split: str

    @property
    def labels(self) -> np.ndarray:
        return self.data.labels.numpy()


@dataclass(frozen=True)
class Source:
    """A source of representations: a frozen encoder f or a stored table.

    Attributes:
        name: a short label for tables and figure legends.
        dim: representation width.
        config: the training config (dataset, image size, normalisation).
        weights_sha256: hash of the weights' (or table's) content, or of a random
            encoder's initial parameters; keys the representation cache.
        kind: ``"encoder"``, or the method that stored the table (``latent``, ``eigenmaps``).
        test_split: what its ``test`` representations are of: ``"test"`` images, or
            ``"held-out training"`` images (latent codes exist only for training images).
        module: the encoder network, maps ``(B, 3, H, W)`` normalised images to
            ``(B, dim)``; ``None`` for a table (read it through :meth:`represent`).
    """

    name: str
    dim: int
    config: Config
    weights_sha256: str
    kind: str
    test_split: str
    represent_fn: Callable[..., Representations] = field(compare=False, repr=False)
    module: nn.Module | None = field(default=None, compare=False, repr=False)

    def represent(self, split: str, dataset: str | None = None, data_dir: str | None = None,
                  **options: Any) -> Representations:
        """The representations of ``dataset``'s (default: the training dataset's) ``split``.

        ``options``: ``cache_dir``, ``use_cache``, ``ctx`` (used by encoders).
        """
        return self.represent_fn(self, split, dataset or self.config.data.dataset, data_dir, **options)
