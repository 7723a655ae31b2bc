"""Sound datasets: a registry of layouts, decoded clips cached on disk, log-mel spectrograms.

Layouts (each read from the files themselves; labels come from the layout):

- ``sounds``: class sub-folders, ``root/train/<class>/*`` and ``root/test/<class>/*``, or a plain
  ``root/<class>/*`` (a test split only, like a plain image folder);
- ``fsdd``: ``{digit}_{speaker}_{index}.wav`` (the Free Spoken Digit Dataset); classes are the
  digits (or the speakers, ``sound.label=speaker``); test clips are recordings 0-4 (FSDD's own
  split, ``sound.split=index``) or the ``sound.test_speakers``' (``sound.split=speaker``);
- ``mimii``: ``<machine>/id_XX/{normal,abnormal}/*.wav`` (MIMII); classes ``normal``,
  ``abnormal``; the test split is a seeded ``sound.test_share`` of each machine ID's normal files
  and every abnormal file, the training split the other normal files;
- ``dcase``: ``<machine>/train/normal_id_XX_*.wav`` and ``<machine>/test/{normal,anomaly}_id_XX_*.wav``
  (DCASE 2020 Task 2); classes ``normal``, ``abnormal``.

MIMII and DCASE keep the ``sound.machines`` and ``sound.machine_ids`` asked for (all by default).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from viclab.audio import logmel_batches
from viclab.config import SoundConfig
from viclab.data.audio import EXTENSIONS, cut, decode
from viclab.data.types import ImageData
from viclab.errors import ViclabError
from viclab.io import atomic_save_npy, atomic_write_text

CACHE_VERSION = "1"  # bump when decoding or cutting changes
NORMAL_CLASSES = ("normal", "abnormal")


@dataclass(frozen=True)
class SoundFile:
    """One file of a layout: its path, class name and attributes (speaker, machine, machine_id)."""

    path: Path
    label: str
    attrs: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SoundData:
    """A split's clips in memory.

    Attributes:
        clips: ``(N, L)`` float32 mono waveforms at ``rate``.
        labels: ``(N,)`` int64 class indices.
        classes: class names, ``classes[label]``.
        rate: sample rate (Hz).
        origin: ``(N,)`` each clip's file, relative to the dataset root.
        attrs: per-clip attributes of the layout (e.g. ``speaker``, ``machine``, ``machine_id``), each ``(N,)``.
    """

    clips: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    rate: int
    origin: np.ndarray
    attrs: dict[str, np.ndarray]

    def __len__(self) -> int:
        return self.clips.shape[0]


def _visible(root: Path, f: Path) -> bool:
    return not any(part.startswith(".") for part in f.relative_to(root).parts)


def sound_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The sound files under ``folder`` (hidden ones ignored), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(f for f in found if f.suffix.lower() in EXTENSIONS and f.is_file() and _visible(folder, f))


def _require(files: list[SoundFile], root: Path, what: str) -> list[SoundFile]:
    if not files:
        raise ViclabError(f"{root} holds no {what}; check sound.* and the folder (sound files: "
                          f"{', '.join(sorted(EXTENSIONS))})")
    return files


def _class_folders(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    """``root/{train,test}/<class>/*``, or a plain ``root/<class>/*`` as a test split."""
    base = root / split if any((root / s).is_dir() for s in ("train", "test")) else root
    if base is root and split == "train":
        raise ViclabError(f"sound folder {root} has no train/ and test/ sub-folders, so it holds no training clips; "
                          f"use the layout {root}/{{train,test}}/<class>/<file>")
    if not base.is_dir():
        raise ViclabError(f"sound folder {root} has no {split}/ sub-folder; add it (layout root/{split}/<class>/*)")
    out = []
    for f in sound_files(base):
        parts = f.relative_to(base).parts
        out.append(SoundFile(f, parts[0] if len(parts) > 1 else base.name))
    return _require(out, base, "sound files")


_FSDD = re.compile(r"^(\d+)_([^_]+)_(\d+)$")


def _fsdd(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    if cfg.split == "share":
        raise ViclabError("sound.split=share is for MIMII; FSDD splits by recording index or speaker: use "
                          "sound.split=index or sound.split=speaker")
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    out = []
    for f in sound_files(rec, recursive=False):
        m = _FSDD.match(f.stem)
        if not m:
            continue
        digit, speaker, index = m.group(1), m.group(2), int(m.group(3))
        test = index <= 4 if cfg.split == "index" else speaker in cfg.test_speakers
        if test == (split == "test"):
            out.append(SoundFile(f, digit if cfg.label == "class" else speaker, (("speaker", speaker),
                                                                                ("digit", digit))))
    return _require(out, rec, f"FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in its {split} split")


def _keep_machine(cfg: SoundConfig, machine: str, machine_id: str) -> bool:
    return (not cfg.machines or machine in cfg.machines) and (not cfg.machine_ids or machine_id in cfg.machine_ids)


def _mimii(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    groups: dict[tuple[str, str, str], list[Path]] = {}
    for f in sound_files(root):
        condition, machine_id, machine = f.parent.name, f.parent.parent.name, f.parent.parent.parent.name
        if condition in NORMAL_CLASSES and machine_id.startswith("id_") and _keep_machine(cfg, machine, machine_id):
            groups.setdefault((machine, machine_id, condition), []).append(f)
    out = []
    for (machine, machine_id, condition), files in sorted(groups.items()):
        if condition == "abnormal":
            chosen = files if split == "test" else []
        else:
            # Seeded per machine ID and independent of which others are kept: the same files are test files
            # whether one ID or all are loaded.
            seed = int.from_bytes(hashlib.sha256(f"{cfg.seed}|{machine}|{machine_id}".encode()).digest()[:4], "big")
            perm = np.random.default_rng(seed).permutation(len(files))
            n_test = int(round(cfg.test_share * len(files)))
            test = set(perm[:n_test].tolist())
            chosen = [f for i, f in enumerate(files) if (i in test) == (split == "test")]
        out += [SoundFile(f, condition, (("machine", machine), ("machine_id", machine_id))) for f in chosen]
    return _require(out, root, f"MIMII clips (<machine>/id_XX/{{normal,abnormal}}/*.wav) in its {split} split")


_DCASE = re.compile(r"^(normal|anomaly)_(id_\d+)_")


def _dcase(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    out = []
    for f in sound_files(root):
        m = _DCASE.match(f.name)
        if not m or f.parent.name != split:
            continue
        machine = f.parent.parent.name
        if _keep_machine(cfg, machine, m.group(2)):
            out.append(SoundFile(f, "normal" if m.group(1) == "normal" else "abnormal",
                                 (("machine", machine), ("machine_id", m.group(2)))))
    return _require(out, root, f"DCASE clips (<machine>/{split}/{{normal,anomaly}}_id_XX_*.wav)")


@dataclass(frozen=True)
class SoundLayout:
    """A registered sound dataset: its folder name under the data root, how its files are found,
    and its class list: fixed, or ``"train"`` (the training split's labels, as image folders) or
    ``"all"`` (the labels of both splits: FSDD's held-out speakers are classes too)."""

    folder: str
    files: Callable[[Path, str, SoundConfig], list[SoundFile]]
    classes: tuple[str, ...] | str = "train"


SOUND_DATASETS: dict[str, SoundLayout] = {
    "sounds": SoundLayout("sounds", _class_folders),
    "fsdd": SoundLayout("fsdd", _fsdd, "all"),
    "mimii": SoundLayout("mimii", _mimii, NORMAL_CLASSES),
    "dcase": SoundLayout("dcase", _dcase, NORMAL_CLASSES),
}


def sound_cache_dir() -> Path:
    """``$VICLAB_CACHE/sound``, else ``$XDG_CACHE_HOME/viclab/sound`` (~/.cache/viclab/sound)."""
    if os.environ.get("VICLAB_CACHE"):
        return Path(os.environ["VICLAB_CACHE"]).expanduser() / "sound"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "viclab" / "sound"


def _file_hash(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def _decode_all(files: list[SoundFile], cfg: SoundConfig, progress: bool) -> tuple[list[np.ndarray], list[int]]:
    """Every file's clips (in parallel threads: libsndfile and soxr release the GIL)."""
    from tqdm import tqdm

    clip, hop = cfg.clip_samples, round(cfg.window_hop_seconds * cfg.rate)

    def one(f: SoundFile) -> np.ndarray:
        return cut(decode(f.path, cfg.rate, cfg.channel), clip, hop)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        pieces = list(tqdm(pool.map(one, files), total=len(files), desc="decoding sound", disable=not progress,
                           leave=False, dynamic_ncols=True))
    return pieces, [len(p) for p in pieces]


def load_sound(name: str, split: str, data_dir: str | os.PathLike, cfg: SoundConfig, use_cache: bool = True,
               progress: bool = False) -> SoundData:
    """A split of a sound dataset as clips, decoded once and then read from the cache.

    Args:
        name: a key of :data:`SOUND_DATASETS`, or ``sounds`` with ``data_dir`` the class folder itself.
        split: ``"train"`` or ``"test"``.
        data_dir: the data root (holding the dataset's folder, e.g. ``fsdd/``) or the dataset's folder.
        cfg: decoding, cutting and split settings.
        use_cache: read and write the decoded clips in :func:`sound_cache_dir`, keyed by the files'
            content hashes, their labels and the decoding settings (so a stale entry cannot be read).

    Returns:
        :class:`SoundData`.
    """
    if name not in SOUND_DATASETS:
        raise ViclabError(f"unknown sound dataset {name!r}; choose one of: {', '.join(SOUND_DATASETS)}")
    layout = SOUND_DATASETS[name]
    data_dir = Path(data_dir).expanduser()
    root = data_dir / layout.folder if (data_dir / layout.folder).is_dir() else data_dir
    if not root.is_dir():
        raise ViclabError(f"the {name} data folder {root} does not exist; give the folder that holds it (data.data_dir "
                          "or $VICLAB_DATA)")
    files = layout.files(root, split, cfg)
    if isinstance(layout.classes, tuple):
        classes = layout.classes
    else:  # one class -> index mapping for both splits, from sorted names
        other = _files_or_none(layout, root, "test" if split == "train" else "train", cfg)
        train = files if split == "train" else other
        names = {f.label for f in (train or files)} | ({f.label for f in files + (other or [])}
                                                       if layout.classes == "all" else set())
        classes = tuple(sorted(names))
    unknown = sorted({f.label for f in files} - set(classes))
    if unknown:
        raise ViclabError(f"the {split} split of {root} has classes the training split lacks ({', '.join(unknown)}); "
                          "give every test class training clips")
    key_fields = [CACHE_VERSION, name, split, repr(cfg.rate), repr(cfg.channel), repr(cfg.clip_samples),
                  repr(round(cfg.window_hop_seconds * cfg.rate)), "|".join(classes)]
    h = hashlib.sha256("|".join(key_fields).encode())
    for f in files:
        h.update(f"{f.path.relative_to(root)}|{f.label}|{f.attrs}|{_file_hash(f.path)}\n".encode())
    cache = sound_cache_dir() / f"{name}-{split}-{h.hexdigest()[:32]}.npy"
    counts = None
    clips = None
    if use_cache and cache.exists():
        try:
            clips = np.load(cache, allow_pickle=False)
            counts = [int(c) for c in cache.with_suffix(".counts").read_text().split()]
        except (OSError, ValueError):
            clips, counts = None, None  # unreadable: decoded again
        if counts is not None and (len(counts) != len(files) or clips.shape != (sum(counts), cfg.clip_samples)):
            clips, counts = None, None
    if clips is None:
        pieces, counts = _decode_all(files, cfg, progress)
        clips = np.concatenate(pieces)
        if use_cache:
            atomic_save_npy(cache, clips)
            atomic_write_text(cache.with_suffix(".counts"), " ".join(map(str, counts)) + "\n")
    rows = np.repeat(np.arange(len(files)), counts)
    index = {c: i for i, c in enumerate(classes)}
    attr_names = sorted({k for f in files for k, _ in f.attrs})
    return SoundData(
        clips=torch.from_numpy(np.ascontiguousarray(clips)),
        labels=torch.tensor([index[files[r].label] for r in rows], dtype=torch.int64),
        classes=classes, rate=cfg.rate,
        origin=np.array([str(files[r].path.relative_to(root)) for r in rows]),
        attrs={k: np.array([dict(files[r].attrs).get(k, "") for r in rows]) for k in attr_names})


def _files_or_none(layout: SoundLayout, root: Path, split: str, cfg: SoundConfig) -> list[SoundFile] | None:
    try:
        return layout.files(root, split, cfg)
    except ViclabError:
        return None  # a plain folder (test only): its own classes


def spectrograms(data: SoundData, cfg: SoundConfig, device: torch.device | str = "cpu") -> ImageData:
    """The clips' log-mel spectrograms as a dataset of one-channel float "images".

    Returns:
        :class:`ImageData` with ``images`` ``(N, 1, n_mels, frames)`` float32 (dB), the clips' labels and classes.
    """
    if data.rate != cfg.rate:
        raise ValueError(f"clips at {data.rate} Hz, features configured for {cfg.rate} Hz")
    return ImageData(logmel_batches(data.clips, cfg, device), data.labels, data.classes)
