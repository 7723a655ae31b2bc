"""Frozen encoders and their representations, cached on disk.

A *source* names an encoder: a run folder (its ``encoder.safetensors``, or the
stored representations of an encoder-free method, see :mod:`viclab.eval.table`),
a ``.safetensors`` file written by ``viclab train``, or ``random:BACKBONE`` for a
randomly initialised encoder of that architecture (the baseline every probe
should beat).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

import viclab
from viclab.augment import eval_transform
from viclab.config import EVAL_DEFAULTS, AugmentConfig, Config, DataConfig, ModelConfig
from viclab.data import ImageData, load_images
from viclab.data.types import data_fingerprint
from viclab.errors import ViclabError, ViclabWarning
from viclab.eval.table import TABLE, RepresentationTable
from viclab.io import atomic_save_npy, tensor_file_sha256
from viclab.runtime import Runtime, select_runtime

RANDOM_PREFIX = "random:"
# Bump when the way representations are computed changes; the package version is in the key too.
CACHE_VERSION = "2"


@dataclass(frozen=True)
class Encoder:
    """A frozen encoder f and what it was trained with.

    Attributes:
        module: maps ``(B, 3, H, W)`` normalised images to ``(B, dim)``; ``None``
            for a representation table.
        dim: representation width.
        config: the training config (dataset, image size, normalisation).
        name: a short label for tables and figure legends.
        weights_sha256: hash of the weights' (or table's) content, or of a random
            encoder's initial parameters; keys the representation cache.
        table: stored representations of an encoder-free method, else ``None``.
    """

    module: nn.Module | None
    dim: int
    config: Config
    name: str
    weights_sha256: str
    table: RepresentationTable | None = field(default=None, compare=False)


def _state_sha256(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(f"{key}{tuple(value.shape)}{value.dtype}".encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def load_source(source: str | os.PathLike, name: str | None = None, seed: int = 0) -> Encoder:
    """Resolve a run folder, a ``.safetensors`` file or ``random:BACKBONE`` to an :class:`Encoder`.

    Args:
        source: what to load.
        name: label for figures (default: the run folder's or file's name).
        seed: initialisation seed for ``random:`` sources.
    """
    from viclab.models import build_backbone
    from viclab.train.checkpoint import load_encoder
    from viclab.train.rundir import CONFIG, ENCODER

    text = str(source)
    if text.startswith(RANDOM_PREFIX):
        backbone = text[len(RANDOM_PREFIX):]
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the caller's RNG
            torch.manual_seed(seed)
            module, dim = build_backbone(backbone)
        cfg = replace(Config(), model=ModelConfig(backbone=backbone))
        return Encoder(module.eval(), dim, cfg, name or f"random {backbone}", _state_sha256(module))
    path = Path(source)
    if path.is_dir() and (path / TABLE).exists():
        return _table_source(path, name or path.name)
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
    return Encoder(module.eval(), dim, cfg, name or label, tensor_file_sha256(path))


def _table_source(run_dir: Path, name: str) -> Encoder:
    from viclab.eval.table import load_table

    table, extra = load_table(run_dir / TABLE)
    if table.kind == "eigenmaps":  # can place unseen images (Nyström)
        from viclab.ablate.eigenmaps import nystrom_extender

        table = replace(table, extend=nystrom_extender(table, extra))
    data_dir = table.config.get("data_dir")
    cfg = replace(Config(), data=DataConfig(dataset=table.dataset, data_dir=data_dir))
    return Encoder(None, table.dim, cfg, name, tensor_file_sha256(run_dir / TABLE), table)


def _table_representations(encoder: Encoder, split: str, dataset: str, data_dir: str | None) -> Representations:
    table = encoder.table
    size = encoder.config.augment.size
    if dataset == table.dataset and split in table.splits:
        s = table.splits[split]
        data = load_images(dataset, s.source_split, data_dir, size)
        if len(s.index) and int(s.index.max()) >= len(data):
            raise ViclabError(f"{encoder.name} holds representations of {dataset} {s.source_split} images up to "
                              f"#{int(s.index.max())}, but only {len(data)} are here; use the data it was made from")
        idx = torch.from_numpy(s.index)
        return Representations(s.features, ImageData(data.images[idx], data.labels[idx], data.classes), dataset, split)
    if table.extend is None:
        have = ", ".join(f"{table.dataset} {n}" for n in table.splits)
        raise ViclabError(f"{encoder.name} ({table.kind}) has no encoder, only stored representations of {have}; "
                          f"it cannot represent {dataset} {split} images")
    data = load_images(dataset, split, data_dir, size)
    return Representations(table.extend(dataset, split, data_dir), data, dataset, split)


def default_cache_dir() -> Path:
    """``$VICLAB_CACHE``, else ``$XDG_CACHE_HOME/viclab/features`` (~/.cache/viclab/features)."""
    if os.environ.get("VICLAB_CACHE"):
        return Path(os.environ["VICLAB_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "viclab" / "features"


def eval_runtime(cfg=EVAL_DEFAULTS) -> Runtime:
    """Where and how precisely evaluations encode: ``cfg.device``, in ``cfg.precision``
    (fp32 unless asked otherwise, on every device)."""
    return select_runtime(cfg.device, cfg.precision)


@torch.no_grad()
def encode(module: nn.Module, images: Tensor, augment: AugmentConfig, batch_size: int = 500,
           runtime: Runtime | None = None, progress: bool = False, desc: str = "encoding") -> Tensor:
    """Representations of ``images`` with the evaluation transform (normalise only).

    Args:
        module: the encoder, put in eval mode here (BatchNorm uses running stats).
        images: ``(N, 3, H, W)`` uint8.
        augment: supplies the normalisation (mean, std).
        batch_size: images per forward pass.
        runtime: device and precision (default: :func:`eval_runtime`, fp32 on CUDA if present,
            else on the CPU).
        progress: show a tqdm bar.

    Returns:
        ``(N, D)`` float32 on the CPU.
    """
    from tqdm import tqdm

    rt = runtime or eval_runtime()
    module = module.to(rt.device).eval()
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False,
                      dynamic_ncols=True):
        x = eval_transform(images[start:start + batch_size].to(rt.device), augment)
        with rt.autocast():
            out.append(module(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


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


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """A cached feature array, or ``None`` (absent, or unreadable: then it is recomputed)."""
    if not path.exists():
        return None
    try:
        feats = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        warnings.warn(f"cached features {path} are damaged ({e}); recomputing them", ViclabWarning, stacklevel=3)
        return None
    if feats.shape != shape or feats.dtype != np.float32:
        warnings.warn(f"cached features {path} hold {feats.dtype} {feats.shape}, not float32 {shape}; recomputing "
                      "them", ViclabWarning, stacklevel=3)
        return None
    return feats


def representations(encoder: Encoder, split: str, dataset: str | None = None, data_dir: str | None = None,
                    cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
                    progress: bool = False, runtime: Runtime | None = None) -> Representations:
    """Encode a dataset split, reusing a cached result when one exists.

    The cache key holds everything that can change the numbers: the weights' SHA-256,
    the dataset's name, the split, a hash of the images themselves, the normalisation,
    the precision and device type of the forward pass, and the code version. A cached
    file that cannot be read is reported and recomputed.

    Args:
        encoder: from :func:`load_source`.
        split: ``"train"`` or ``"test"``.
        dataset: registry name or image-folder path (default: the one the encoder was trained on).
        data_dir: data root (default: ``$VICLAB_DATA`` or the cache dir).
        cache_dir: where ``.npy`` features live (default: :func:`default_cache_dir`).
        use_cache: read and write the cache.
        runtime: device and precision of the forward pass (default: :func:`eval_runtime`).
    """
    cfg = encoder.config
    dataset = dataset or cfg.data.dataset
    # The training run's own data folder when it exists here (the weights may come from elsewhere).
    trained_on = cfg.data.data_dir if cfg.data.data_dir and Path(cfg.data.data_dir).is_dir() else None
    if encoder.table is not None:
        return _table_representations(encoder, split, dataset, data_dir or trained_on)
    data = load_images(dataset, split, data_dir or trained_on, cfg.augment.size)
    rt = runtime or eval_runtime()
    path = None
    if use_cache:
        key = hashlib.sha256("|".join([CACHE_VERSION, viclab.__version__, encoder.weights_sha256, dataset, split,
                                       data_fingerprint(data), repr(cfg.augment.mean), repr(cfg.augment.std),
                                       rt.precision, rt.device.type]).encode()).hexdigest()[:32]
        path = Path(cache_dir or default_cache_dir()) / f"{key}.npy"
        feats = _read_cached(path, (len(data), encoder.dim))
        if feats is not None:
            return Representations(feats, data, dataset, split)
    feats = encode(encoder.module, data.images, cfg.augment, runtime=rt, progress=progress,
                   desc=f"{encoder.name}: {dataset} {split}").numpy()
    if path is not None:
        try:
            atomic_save_npy(path, feats)
        except (OSError, ViclabError) as e:  # an unwritable cache only costs time on the next call
            warnings.warn(f"cannot cache features in {path.parent} ({getattr(e, 'strerror', None) or e}); set "
                          "VICLAB_CACHE to a writable folder", ViclabWarning, stacklevel=2)
    return Representations(feats, data, dataset, split)
