"""Neighbours as views (spec S6): pair each image with one of its k nearest training images.

The neighbours come from a trained encoder's training-set representations, are computed once (faiss, excluding the image
itself) and saved in the run folder, so a resumed run pairs images exactly as before. Training is
:func:`viclab.engine.train` with ``views.kind = "neighbours"``, whose source :func:`neighbour_views` is registered here.
"""

from __future__ import annotations

import gc
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from viclab.ablate.graph import knn_table, saved_key
from viclab.config import AugmentConfig, Config, ViewsConfig
from viclab.core.context import DEFAULT_CONTEXT, Context
from viclab.core.errors import ViclabError
from viclab.core.io import atomic_save_npy, atomic_write_text
from viclab.core.runtime import barrier, is_main
from viclab.data import ImageData
from viclab.engine import BatchSource, ViewContext
from viclab.engine.vicreg import VIEW_SOURCES
from viclab.represent.encode import load_source, representations
from viclab.views import eval_transform

NEIGHBOURS, NEIGHBOURS_INFO = "neighbours.npy", "neighbours.json"


def sample_neighbours(table: Tensor, idx: Tensor, gen: torch.Generator) -> Tensor:
    """One uniformly chosen neighbour per anchor.

    Args:
        table: ``(N, k)`` int64 neighbour indices (never the row itself).
        idx: ``(B,)`` anchor indices.
        gen: seeded generator on ``table``'s device.

    Returns:
        ``(B,)`` indices, ``table[idx[b], u_b]`` with ``u_b`` uniform in ``[0, k)``.
    """
    pick = torch.randint(0, table.shape[1], (len(idx),), generator=gen, device=table.device)
    return table[idx, pick]


class NeighbourPairs:
    """Pair maker for the training loop: ``(image, a random one of its neighbours)``, normalised only
    (:func:`~viclab.views.eval_transform` of the rows' ``modality``)."""

    def __init__(self, images: Tensor, table: Tensor, augment: AugmentConfig, modality: str,
                 channels_last: bool = False) -> None:
        self.images, self.table, self.augment, self.channels_last = images, table, augment, channels_last
        self.modality = modality

    def __call__(self, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """``(B,)`` anchor indices -> two ``(B, 3, H, W)`` float batches."""
        v1 = eval_transform(self.images[idx], self.augment, self.modality)
        v2 = eval_transform(self.images[sample_neighbours(self.table, idx, gen)], self.augment, self.modality)
        if self.channels_last:
            v1, v2 = v1.contiguous(memory_format=torch.channels_last), v2.contiguous(memory_format=torch.channels_last)
        return v1, v2


def neighbour_table(run_dir: Path, cfg: Config, train_data: ImageData, ctx: Context = DEFAULT_CONTEXT,
                    started: bool = False) -> np.ndarray:
    """The run's ``(N, k)`` neighbour table: read from ``run_dir`` or computed and saved there.

    Keyed by the SHA-256 of the source encoder's weights (``neighbours.json``): a changed source
    rebuilds it, or refuses a run that has already trained on the old table (``started``). The
    source is freed before this returns, so training never holds two models.
    """
    path, info_path = run_dir / NEIGHBOURS, run_dir / NEIGHBOURS_INFO
    source = load_source(cfg.views.source)
    sha, name = source.weights_sha256, source.name
    if (saved_key(path, info_path) or {}).get("weights_sha256") == sha:
        table = np.load(path)
        if table.shape == (len(train_data), cfg.views.k):
            return table
    if started:
        raise ViclabError(f"the neighbour table of {run_dir} came from other weights than {cfg.views.source} holds "
                          "now (or is missing), and the run has already trained on it; start a new run")
    if source.config.data.dataset != cfg.data.dataset:
        raise ViclabError(f"{cfg.views.source} was trained on {source.config.data.dataset}, this run uses "
                          f"{cfg.data.dataset}; neighbours must come from the same images")
    # The source encodes on its own runtime (eval_runtime), not the one the run trains on (its dataset: checked above).
    reps = representations(source, "train", ctx=replace(ctx, runtime=None, data_dir=cfg.data.data_dir))
    del source
    gc.collect()  # free the source model before training (spec S6)
    torch.cuda.empty_cache()  # a no-op where CUDA was never initialised
    n = len(train_data)
    if len(reps.features) < n or not torch.equal(reps.data.images[:n], train_data.images):
        raise ViclabError(f"the training images of {cfg.views.source} differ from this run's; "
                          "use the same dataset and data folder")
    table = knn_table(reps.features[:n], cfg.views.k)
    labels = train_data.labels.numpy()
    atomic_save_npy(path, table)
    info = {"source": str(cfg.views.source), "source_name": name, "weights_sha256": sha, "k": cfg.views.k, "images": n,
            "same_class": float((labels[table] == labels[:, None]).mean())}
    atomic_write_text(info_path, json.dumps(info, indent=2) + "\n")
    return table


def neighbours_config(source: str, base: Config | None = None, k: int = ViewsConfig.k, epochs: int = 1) -> Config:
    """A run config for spec S6: the source's own recipe (model, optimiser, loss, batch),
    ``views.kind = "neighbours"`` and ``epochs`` epochs."""
    base = base if base is not None else load_source(source).config
    return replace(base, views=ViewsConfig(kind="neighbours", source=str(source), k=k),
                   train=replace(base.train, epochs=epochs))


def neighbour_views(ctx: ViewContext) -> BatchSource:
    """``views.kind = "neighbours"``: (image, a random one of its ``views.k`` neighbours), with the
    table built (rank 0) or read from the run folder (every other rank, once rank 0 has it)."""
    table = neighbour_table(ctx.run.path, ctx.cfg, ctx.data, ctx.context, ctx.started) if is_main() else None
    barrier()
    if table is None:
        table = np.load(ctx.run.path / NEIGHBOURS)
    return NeighbourPairs(ctx.images, torch.from_numpy(table).to(ctx.images.device), ctx.cfg.augment,
                          ctx.data.modality, ctx.cfg.model.channels_last)


VIEW_SOURCES["neighbours"] = neighbour_views
