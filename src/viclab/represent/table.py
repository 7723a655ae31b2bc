"""Representation tables: run folders whose representations are stored, not computed.

Latent optimisation (spec S5) and Laplacian Eigenmaps (spec S7) have no encoder: they produce one vector per image
they were fitted on. Their run folders hold ``representations.safetensors``: per evaluation split (``train``,
``test``) the vectors and the indices of their images in a split of the dataset. Latent optimisation's ``test`` split
is the held-out tenth of the *training* images, so the probe trains on 90% of the codes and tests on the rest.

:func:`viclab.represent.encode.table_source` makes a table a ``Source`` like any encoder; a Laplacian Eigenmaps
table also places unseen images (:func:`nystrom_extend`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write

TABLE = "representations.safetensors"


@dataclass(frozen=True)
class TableSplit:
    """One evaluation split: ``features (N, D)`` of ``source_split`` images ``index (N,)``."""

    features: np.ndarray
    index: np.ndarray
    source_split: str


@dataclass(frozen=True)
class RepresentationTable:
    """Stored representations of ``dataset``'s images by ``kind`` (``latent``, ``eigenmaps``): evaluation split name
    -> :class:`TableSplit`, and the producing run's resolved ``config``."""

    kind: str
    dataset: str
    splits: dict[str, TableSplit]
    config: dict[str, Any]

    @property
    def dim(self) -> int:
        return next(iter(self.splits.values())).features.shape[1]


def save_table(path: str | Path, kind: str, dataset: str, splits: dict[str, TableSplit],
               config: dict[str, Any], extra: dict[str, np.ndarray] | None = None) -> Path:
    """Write a table atomically (safetensors; the config and split map in its metadata)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, s in splits.items():
        tensors[name] = torch.from_numpy(np.ascontiguousarray(s.features, dtype=np.float32))
        tensors[f"{name}_index"] = torch.from_numpy(np.ascontiguousarray(s.index, dtype=np.int64))
    for name, a in (extra or {}).items():
        tensors[f"extra.{name}"] = torch.from_numpy(np.ascontiguousarray(a))
    meta = {"kind": kind, "dataset": dataset, "config": json.dumps(config),
            "splits": json.dumps({n: s.source_split for n, s in splits.items()})}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def load_table(path: str | Path) -> tuple[RepresentationTable, dict[str, np.ndarray]]:
    """Read a table and its extra arrays (e.g. what a Nyström extension needs)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        arrays = load_file(str(path))
        split_map = json.loads(meta["splits"])
        table = RepresentationTable(
            meta["kind"], meta["dataset"],
            {n: TableSplit(arrays[n], arrays[f"{n}_index"], src) for n, src in split_map.items()},
            json.loads(meta["config"]))
    except (SafetensorError, OSError, KeyError, json.JSONDecodeError) as e:
        raise ViclabError(f"cannot read representation table {path} ({e}); the run folder is damaged") from None
    extra = {k[len("extra."):]: v for k, v in arrays.items() if k.startswith("extra.")}
    return table, extra


def nystrom_extend(embedding: np.ndarray, eigenvalues: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Place new points in a Laplacian Eigenmaps embedding (Bengio et al., 2004).

    The generalised eigenvectors satisfy ``y_i = (1 / (1 - lambda)) * sum_j W_ij y_j / d_i``. A new point joined to
    its ``k`` nearest nodes by unit edges (the graph's own rule) gets the same formula: the mean of its neighbours'
    coordinates divided by ``1 - lambda``.

    Args:
        embedding: ``(N, dim)`` node coordinates ``y``.
        eigenvalues: ``(dim,)`` matching eigenvalues of the normalised Laplacian.
        neighbours: ``(M, k)`` node indices of each new point's nearest nodes.

    Returns:
        ``(M, dim)`` float32.
    """
    return (embedding[neighbours].mean(axis=1) / (1.0 - eigenvalues)).astype(np.float32)

