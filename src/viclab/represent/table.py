"""Representation tables: run folders whose representations are stored, not computed.

Latent optimisation (spec S5) and Laplacian Eigenmaps (spec S7) have no encoder that
maps a new image to a vector: they produce one vector per image they were fitted on.
Their run folders hold ``representations.safetensors``: per evaluation split
(``train``, ``test``) the vectors and the indices of the images they belong to in a
split of the dataset. Latent optimisation's ``test`` split is the held-out tenth of
the *training* images, so the probe trains on 90% of the codes and tests on the rest.

:func:`table_source` makes a table a :class:`~viclab.represent.source.Source` like any
encoder; a Laplacian Eigenmaps table also places unseen images (Nyström extension).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from viclab.config import Config, DataConfig, EigenmapsConfig
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_write, tensor_file_sha256
from viclab.data import load_images
from viclab.represent.neighbors import nearest
from viclab.represent.source import Representations, Source, existing_dir

TABLE = "representations.safetensors"


@dataclass(frozen=True)
class TableSplit:
    """One evaluation split: ``features (N, D)`` of ``source_split`` images ``index (N,)``."""

    features: np.ndarray
    index: np.ndarray
    source_split: str


@dataclass(frozen=True)
class RepresentationTable:
    """Stored representations of a dataset's images.

    Attributes:
        kind: what produced them (``latent``, ``eigenmaps``).
        dataset: the dataset the indices refer to.
        splits: evaluation split name -> :class:`TableSplit`.
        config: the producing run's resolved config.
    """

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


# ``(source spec, seed, dataset, split, data_dir) -> (N, D)``: another source's representations.
FeaturesOf = Callable[[str, int, str, str, "str | None"], np.ndarray]


def table_source(run_dir: Path, name: str, features_of: FeaturesOf) -> Source:
    """The :class:`Source` of a run folder's stored table.

    ``features_of`` computes the graph features a Laplacian Eigenmaps table needs to place
    images it was not fitted on (:func:`viclab.represent.encode.load_source` passes its own).
    """
    table, extra = load_table(run_dir / TABLE)
    # Laplacian Eigenmaps can place unseen images (Nyström): ``(dataset, split, data_dir) -> (N, D)``
    extend = nystrom_extender(table, extra, features_of) if table.kind == "eigenmaps" else None
    cfg = replace(Config(), data=DataConfig(dataset=table.dataset, data_dir=table.config.get("data_dir")))
    held_out = "held-out training" if "test" in table.splits and table.splits["test"].source_split == "train" \
        else "test"
    represent = lambda src, split, dataset, data_dir, **_options: _table_representations(table, extend, src, split,
                                                                                         dataset, data_dir)
    return Source(name, table.dim, cfg, tensor_file_sha256(run_dir / TABLE), table.kind, held_out, represent)


def _table_representations(table: RepresentationTable, extend: Callable[[str, str, str | None], np.ndarray] | None,
                           source: Source, split: str, dataset: str, data_dir: str | None) -> Representations:
    size = source.config.augment.size
    data_dir = data_dir or existing_dir(table.config.get("data_dir"))
    if dataset == table.dataset and split in table.splits:
        s = table.splits[split]
        data = load_images(dataset, s.source_split, data_dir, size)
        if len(s.index) and int(s.index.max()) >= len(data):
            raise ViclabError(f"{source.name} holds representations of {dataset} {s.source_split} images up to "
                              f"#{int(s.index.max())}, but only {len(data)} are here; use the data it was made from")
        return Representations(s.features, data.rows(s.index), dataset, split)  # the rows with their files
    if extend is None:
        have = ", ".join(f"{table.dataset} {n}" for n in table.splits)
        raise ViclabError(f"{source.name} ({table.kind}) has no encoder, only stored representations of {have}; "
                          f"it cannot represent {dataset} {split} images")
    data = load_images(dataset, split, data_dir, size)
    return Representations(extend(dataset, split, data_dir), data, dataset, split)


def nystrom_extend(embedding: np.ndarray, eigenvalues: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """Place new points in a Laplacian Eigenmaps embedding (Bengio et al., 2004).

    The generalised eigenvectors satisfy ``y_i = (1 / (1 - lambda)) * sum_j W_ij y_j / d_i``.
    A new point joined to its ``k`` nearest nodes by unit edges (the graph's own rule) gets
    the same formula: the mean of its neighbours' coordinates divided by ``1 - lambda``.

    Args:
        embedding: ``(N, dim)`` node coordinates ``y``.
        eigenvalues: ``(dim,)`` matching eigenvalues of the normalised Laplacian.
        neighbours: ``(M, k)`` node indices of each new point's nearest nodes.

    Returns:
        ``(M, dim)`` float32.
    """
    return (embedding[neighbours].mean(axis=1) / (1.0 - eigenvalues)).astype(np.float32)


def nystrom_extender(table: RepresentationTable, extra: dict[str, np.ndarray],
                     features_of: FeaturesOf) -> Callable[[str, str, str | None], np.ndarray]:
    """``(dataset, split, data_dir) -> (M, dim)`` for an eigenmaps table (see :func:`nystrom_extend`)."""
    cfg = EigenmapsConfig(**table.config)
    order = ("train", "test")

    def extend(dataset: str, split: str, data_dir: str | None) -> np.ndarray:
        nodes = np.concatenate([features_of(cfg.features, cfg.seed, table.dataset, s, data_dir)[table.splits[s].index]
                                for s in order])
        new = features_of(cfg.features, cfg.seed, dataset, split, data_dir)
        _, nb = nearest(nodes, new, cfg.k)
        y = np.concatenate([table.splits[s].features for s in order])
        return nystrom_extend(y, extra["eigenvalues"], nb)

    return extend
