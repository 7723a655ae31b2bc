"""Sources of representations (:func:`load_source`): frozen encoders, whose representations are cached on disk,
and stored tables (:mod:`viclab.represent.table`). :meth:`Source.represent` gives a dataset split's representations
either way, so no caller branches on which.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import viclab
from viclab.config import EVAL_DEFAULTS, AugmentConfig, Config, DataConfig, EigenmapsConfig, ModelConfig
from viclab.core.cache import CacheStore
from viclab.core.context import QUIET, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.hashing import digest, file_digest
from viclab.core.io import tensor_file_sha256
from viclab.core.runtime import Runtime, select_runtime
from viclab.data import ImageData, load_images, load_inputs
from viclab.data.types import data_fingerprint
from viclab.engine.checkpoint import load_encoder, load_pretrained
from viclab.engine.rundir import CONFIG, ENCODER
from viclab.models import IMAGENET_MEAN, IMAGENET_STD, build_backbone, check_inputs
from viclab.represent.neighbors import nearest
from viclab.represent.table import TABLE, RepresentationTable, load_table, nystrom_extend
from viclab.views import eval_transform

RANDOM_PREFIX = "random:"
PRETRAINED_PREFIX = "pretrained:"  # pretrained:BACKBONE:FILE, a published checkpoint
# What published checkpoints were trained on (ImageNet, which viclab does not load); not a possible path.
PRETRAINED_DATASET = "<imagenet>"


def existing_dir(folder: str | None) -> str | None:
    """``folder`` when it exists here, else ``None``: a run's recorded data folder may be another machine's."""
    return folder if folder and Path(folder).is_dir() else None


@dataclass(frozen=True)
class Representations:
    """One split (``"train"``, ``"test"``) of a dataset (registry name or folder path) and its representations:
    ``features`` ``(N, D)`` float32 of ``data``'s images ``(N, 3, H, W)`` uint8, labels ``(N,)`` and class names."""

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
        weights_sha256: hash of the weights' (or table's) content, or of a random encoder's initial parameters; keys
            the representation cache.
        kind: ``"encoder"``, or the method that stored the table (``latent``, ``eigenmaps``).
        test_split: what its ``test`` representations are of: ``"test"`` images, or ``"held-out training"`` images
            (latent codes exist only for training images).
        represent_fn: ``(source, split, dataset, **options) -> Representations``, behind :meth:`represent`.
        module: the encoder network, ``(B, 3, H, W)`` normalised images -> ``(B, dim)``; ``None`` for a table.
    """

    name: str
    dim: int
    config: Config
    weights_sha256: str
    kind: str
    test_split: str
    represent_fn: Callable[..., Representations] = field(compare=False, repr=False)
    module: nn.Module | None = field(default=None, compare=False, repr=False)

    def represent(self, split: str, dataset: str | None = None, **options: Any) -> Representations:
        """The representations of ``dataset``'s (default: the training dataset's) ``split``.

        ``options``: ``ctx`` (its ``data_dir``; encoders: its ``progress``, ``runtime``), ``cache_dir``, ``use_cache``.
        """
        return self.represent_fn(self, split, dataset or self.config.data.dataset, **options)


def state_sha256(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and values)."""
    return digest(part for key, value in module.state_dict().items()
                  for part in (f"{key}{tuple(value.shape)}{value.dtype}", value))


def encoder_source(module: nn.Module, dim: int, config: Config, name: str, weights_sha256: str) -> Source:
    """A :class:`Source` of a frozen encoder ``module`` (``(B, 3, H, W) -> (B, dim)``)."""
    return Source(name, dim, config, weights_sha256, "encoder", "test", _encoder_representations, module.eval())


def load_source(source: str | os.PathLike, name: str | None = None, seed: int = 0) -> Source:
    """Resolve a source to a :class:`Source`.

    Args:
        source: a run folder (its ``encoder.safetensors``, or the stored representations of an encoder-free method,
            :mod:`viclab.represent.table`), a ``.safetensors`` file written by ``viclab train``, ``random:BACKBONE``
            (a randomly initialised encoder: the baseline every probe should beat), or ``pretrained:BACKBONE:FILE``
            (a published checkpoint: facebookresearch/vicreg's ``resnet50.pth``, a DINO or timm ViT), evaluated with
            ``--dataset``.
        name: label for figures (default: the run folder's or file's name).
        seed: initialisation seed for ``random:`` sources.
    """
    text = str(source)
    if text.startswith(PRETRAINED_PREFIX):
        return _pretrained_source(text, name)
    if text.startswith(RANDOM_PREFIX):
        backbone = text[len(RANDOM_PREFIX):]
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(seed)
            module, dim = build_backbone(backbone)
        cfg = replace(Config(), model=ModelConfig(backbone=backbone))
        return encoder_source(module, dim, cfg, name or f"random {backbone}", state_sha256(module))
    path = Path(source)
    if path.is_dir() and (path / TABLE).exists():
        return table_source(path, name or path.name)
    if path.is_dir():
        if not (path / ENCODER).exists() and not (path / CONFIG).exists():
            raise ViclabError(f"{path} is not a run folder (it has no {CONFIG} and no {ENCODER}); give a run "
                              "folder, a .safetensors file or random:BACKBONE")
        if not (path / ENCODER).exists():
            raise ViclabError(f"run folder {path} has no {ENCODER}: its training has not finished; "
                              f"finish it with 'viclab train --resume {path}'")
        label, path = path.name, path / ENCODER
    elif path.exists():
        label = path.stem
    else:
        raise ViclabError(f"{path} does not exist; give a run folder, a .safetensors file or random:BACKBONE")
    module, dim, cfg = load_encoder(path)
    return encoder_source(module, dim, cfg, name or label, tensor_file_sha256(path))


def _pretrained_source(text: str, name: str | None) -> Source:
    """``pretrained:BACKBONE:FILE``: a published checkpoint at its training image size and normalisation."""
    backbone, _, file = text[len(PRETRAINED_PREFIX):].partition(":")
    if not backbone or not file:
        raise ViclabError(f"{text}: give pretrained:BACKBONE:FILE, e.g. pretrained:resnet50:resnet50.pth")
    module, dim, size = load_pretrained(backbone, file)
    cfg = replace(Config(), data=DataConfig(dataset=PRETRAINED_DATASET), model=ModelConfig(backbone=backbone),
                  augment=AugmentConfig(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD))
    return encoder_source(module, dim, cfg, name or f"{Path(file).stem} ({backbone})",
                          file_digest(Path(file).expanduser(), "sha256", None))


def table_source(run_dir: Path, name: str) -> Source:
    """The :class:`Source` of a run folder's stored table (:mod:`viclab.represent.table`)."""
    table, extra = load_table(run_dir / TABLE)
    cfg = replace(Config(), data=DataConfig(dataset=table.dataset, data_dir=table.config.get("data_dir")))
    held_out = "held-out training" if getattr(table.splits.get("test"), "source_split", None) == "train" else "test"

    def represent(source: Source, split: str, dataset: str, ctx: Context = QUIET, **_options: Any) -> Representations:
        size = source.config.augment.size
        data_dir = ctx.data_dir or existing_dir(table.config.get("data_dir"))
        if dataset == table.dataset and split in table.splits:
            s = table.splits[split]
            data = load_images(dataset, s.source_split, data_dir, size)
            if len(s.index) and (last := int(s.index.max())) >= len(data):
                raise ViclabError(f"{source.name} holds representations of {dataset} {s.source_split} images up to "
                                  f"#{last}, but only {len(data)} are here; use the data it was made from")
            return Representations(s.features, data.rows(s.index), dataset, split)  # the rows with their files
        if table.kind != "eigenmaps":  # only Laplacian Eigenmaps can place unseen images (Nyström)
            have = ", ".join(f"{table.dataset} {n}" for n in table.splits)
            raise ViclabError(f"{source.name} ({table.kind}) has no encoder, only stored representations of {have}; "
                              f"it cannot represent {dataset} {split} images")
        data = load_images(dataset, split, data_dir, size)
        features = _nystrom(table, extra["eigenvalues"], dataset, split, replace(QUIET, data_dir=data_dir))
        return Representations(features, data, dataset, split)

    return Source(name, table.dim, cfg, tensor_file_sha256(run_dir / TABLE), table.kind, held_out, represent)


def _nystrom(table: RepresentationTable, eigenvalues: np.ndarray, dataset: str, split: str, ctx: Context) -> np.ndarray:
    """``(M, dim)``: ``dataset``'s ``split`` placed in an eigenmaps table, each image joined to its nearest nodes in the
    features the graph was built on (:func:`~viclab.represent.table.nystrom_extend`)."""
    cfg = EigenmapsConfig(**table.config)
    graph, order = load_source(cfg.features, seed=cfg.seed), ("train", "test")
    nodes = np.concatenate([representations(graph, s, table.dataset, ctx=ctx).features[table.splits[s].index]
                            for s in order])
    _, nb = nearest(nodes, representations(graph, split, dataset, ctx=ctx).features, cfg.k)
    return nystrom_extend(np.concatenate([table.splits[s].features for s in order]), eigenvalues, nb)


def eval_runtime(cfg=EVAL_DEFAULTS) -> Runtime:
    """Where and how precisely evaluations encode: ``cfg.device``, in ``cfg.precision`` (default fp32 everywhere)."""
    return select_runtime(cfg.device, cfg.precision)


@torch.no_grad()
def encode(module: nn.Module, images: Tensor, augment: AugmentConfig, batch_size: int = 500,
           ctx: Context = QUIET, desc: str = "encoding", *, modality: str) -> Tensor:
    """Representations of ``images`` with the evaluation transform (normalise only), ``batch_size`` per forward pass.

    Args:
        module: the encoder, put in eval mode here (BatchNorm uses running stats).
        images: ``(N, 3, H, W)`` uint8, or ``(N, 1, n_mels, frames)`` float32 spectrograms.
        augment: supplies the normalisation (mean, std).
        ctx: its ``runtime`` (default: :func:`eval_runtime`) and ``progress`` (a tqdm bar).
        modality: what ``images`` hold (:attr:`viclab.data.ImageData.modality`).

    Returns:
        ``(N, D)`` float32 on the CPU.
    """
    from tqdm import tqdm

    rt = ctx.runtime or eval_runtime()
    # Channels-last, as in training: oneDNN's convolutions run 1.7x faster so on the CPU (small_cnn, fp32).
    module = module.to(rt.device, memory_format=torch.channels_last).eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not ctx.progress, leave=False,
                      dynamic_ncols=True):
        x = eval_transform(images[start:start + batch_size].to(rt.device), augment, modality)
        x = x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x
        with rt.autocast():
            out.append(module(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def representations(source: Source, split: str, dataset: str | None = None,
                    cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    ctx: Context = QUIET) -> Representations:
    """The representations of a dataset split by ``source`` (:meth:`Source.represent`).

    Args:
        source: from :func:`load_source`; split: ``"train"`` or ``"test"``.
        dataset: registry name or image-folder path (default: the one the source was trained on).
        cache_dir: where encoders' ``.npy`` features live (default: the ``features`` namespace of
            :class:`~viclab.core.cache.CacheStore`), read and written if ``use_cache``.
        ctx: ``progress`` (a bar), ``runtime``, an encoder's device and precision (default: :func:`eval_runtime`), and
            ``data_dir``, the data root (default: the training run's if it exists here, else ``$VICLAB_DATA`` or the
            cache dir).
    """
    return source.represent(split, dataset, cache_dir=cache_dir, use_cache=use_cache, ctx=ctx)


def _encoder_representations(encoder: Source, split: str, dataset: str, cache_dir: str | os.PathLike | None = None,
                             use_cache: bool = True, ctx: Context = QUIET) -> Representations:
    """Encode a dataset split, or reuse the cached result: keyed by everything that can change the numbers (the
    code version, the weights, the dataset, split and images, the normalisation, the precision and device type)."""
    cfg = encoder.config
    data = load_inputs(dataset, split, ctx.data_dir or existing_dir(cfg.data.data_dir), cfg)
    check_inputs(cfg.model.backbone, data)  # e.g. --dataset fsdd for an image encoder
    rt = ctx.runtime or eval_runtime()

    def compute() -> np.ndarray:
        return encode(encoder.module, data.images, cfg.augment, ctx=replace(ctx, runtime=rt),
                      desc=f"{encoder.name}: {dataset} {split}", modality=data.modality).numpy()

    if not use_cache:
        return Representations(compute(), data, dataset, split)
    store = CacheStore("features", Path(cache_dir) if cache_dir else None, warn=True)
    path = store.path([viclab.__version__, encoder.weights_sha256, dataset, split, data_fingerprint(data),
                       repr(cfg.augment.mean), repr(cfg.augment.std), rt.precision, rt.device.type])

    def unwritable(e: Exception) -> None:  # an unwritable cache only costs time on the next call
        warnings.warn(f"cannot cache features in {path.parent} ({getattr(e, 'strerror', None) or e}); set "
                      "VICLAB_CACHE to a writable folder", ViclabWarning, stacklevel=4)

    feats = store.read_or_compute(path, compute, (len(data), encoder.dim), np.float32, unwritable=unwritable)
    return Representations(feats, data, dataset, split)


__all__ = ["Representations", "Source", "encode", "encoder_source", "eval_runtime", "load_source", "representations"]
