"""Sound datasets: sound files decoded to clips, a registry of layouts, clips cached on disk, log-mel spectrograms.

Layouts (each read from the files themselves; labels come from the layout):

- ``sounds``: class sub-folders, ``root/train/<class>/*`` and ``root/test/<class>/*``, or a plain ``root/<class>/*``
  (a test split only, like a plain image folder);
- ``fsdd``: ``{digit}_{speaker}_{index}.wav`` (the Free Spoken Digit Dataset); classes are the digits (or the
  speakers, ``sound.label=speaker``); test clips are recordings 0-4 (FSDD's own split, ``sound.split=index``) or
  the ``sound.test_speakers``' (``sound.split=speaker``);
- ``mimii``: ``<machine>/id_XX/{normal,abnormal}/*.wav`` (MIMII); classes ``normal``, ``abnormal``; the test split
  is a seeded ``sound.test_share`` of each machine ID's normal files and every abnormal file, the training split
  the other normal files;
- ``dcase``: ``<machine>/train/normal_id_XX_*.wav`` and ``<machine>/test/{normal,anomaly}_id_XX_*.wav``
  (DCASE 2020 Task 2); classes ``normal``, ``abnormal``.

MIMII and DCASE keep the ``sound.machines`` and ``sound.machine_ids`` asked for (all by default).

Files: any file libsndfile reads (WAV of 8-, 16-, 24- or 32-bit integers or floats, FLAC, OGG/Vorbis), of any rate,
channel count and length: mixed to mono (the mean of the channels, or one channel), resampled with soxr (high
quality), then cut into clips (one per file, cropped or zero-padded at the end, or sliding windows every hop, the
last one padded).
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from viclab.config import SoundConfig
from viclab.core.cache import CacheStore
from viclab.core.context import DEFAULT_CONTEXT, QUIET, Context
from viclab.core.errors import ViclabError, ViclabWarning
from viclab.core.hashing import digest, file_digest
from viclab.core.io import atomic_write
from viclab.data.folder import listed, parallel
from viclab.data.types import ImageData
from viclab.signal import logmel_batches

EXTENSIONS = {".wav", ".flac", ".ogg"}
COUNTS = ".counts"  # beside a cached clip array: how many clips each file gave
NORMAL_CLASSES = ("normal", "abnormal")


def decode(path: str | Path, rate: int, channel: int = -1) -> np.ndarray:
    """One file as a mono float32 waveform at ``rate`` Hz.

    Args:
        path: a WAV, FLAC or OGG file.
        rate: the output sample rate.
        channel: ``-1`` mixes the channels (their mean); ``k >= 0`` keeps channel ``k``.

    Returns:
        ``(samples,)`` float32 in ``[-1, 1]`` (integer formats scaled by their full range).

    Raises:
        ViclabError: the file is not a sound libsndfile reads, holds no samples or non-finite ones (NaN,
            infinity), or lacks ``channel``.
    """
    import soundfile as sf
    import soxr

    try:
        data, source_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise ViclabError(f"cannot decode sound file {path} ({e}); remove or replace it") from None
    if data.shape[0] == 0:
        raise ViclabError(f"sound file {path} holds no samples; remove it")
    if not np.isfinite(data).all():
        # A float WAV can hold NaN or infinity; one such sample makes every statistic and score of it non-finite.
        bad = int((~np.isfinite(data)).any(axis=1).sum())
        raise ViclabError(f"sound file {path} holds {bad} non-finite sample(s) (NaN or infinity); remove or repair it")
    if channel >= data.shape[1]:
        raise ViclabError(f"sound file {path} has {data.shape[1]} channel(s), so it has no channel {channel}; use "
                          f"sound.channel=-1 (the mean) or a channel below {data.shape[1]}")
    mono = data.mean(axis=1) if channel < 0 else data[:, channel]
    if source_rate != rate:
        mono = soxr.resample(mono, source_rate, rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)


def cut(wave: np.ndarray, clip: int, hop: int = 0) -> np.ndarray:
    """Fixed-length clips ``(clips, clip)`` float32 of a waveform ``(samples,)``.

    Args:
        hop: ``0``: one clip, the first ``clip`` samples (zero-padded at the end if shorter); ``> 0``: windows
            starting every ``hop`` samples until one reaches the end (the last zero-padded), at least one.
    """
    # With a hop, the last start is the first multiple of hop at or past len - clip: the end is never dropped.
    starts = range(0, max(1, len(wave) - clip + hop), hop) if hop > 0 else [0]
    out = np.zeros((len(starts), clip), dtype=np.float32)
    for i, s in enumerate(starts):
        piece = wave[s:s + clip]
        out[i, :len(piece)] = piece
    return out


def write_wav(path: str | Path, wave: np.ndarray, rate: int) -> Path:
    """Write ``wave``, ``(samples,)`` float in [-1, 1] (clipped to the range), as a 16-bit PCM WAV file, atomically."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.clip(np.asarray(wave, dtype=np.float32), -1, 1), rate, subtype="PCM_16", format="WAV")
    return atomic_write(path, lambda p: p.write_bytes(buf.getvalue()))



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
        files: ``(N,)`` each clip's file, its absolute path.
        windows: ``(N,)`` each clip's window of its file (``sound.window_hop_seconds > 0``); ``None``: whole files.
    """

    clips: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    rate: int
    origin: np.ndarray
    attrs: dict[str, np.ndarray]
    files: np.ndarray | None = None
    windows: np.ndarray | None = None

    def __len__(self) -> int:
        return self.clips.shape[0]


def sound_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The sound files under ``folder`` (hidden ones ignored), sorted."""
    return listed(folder, EXTENSIONS, recursive)


def _require(files: list[SoundFile], root: Path, what: str, skipped: Sequence[Path] = (),
             layout: str = "") -> list[SoundFile]:
    """``files``, or an error when there are none; ``skipped``: the sound files that match no part of
    ``layout`` (a warning names them, or the error does when nothing else was found)."""
    named = ", ".join(str(f.relative_to(root) if f.is_relative_to(root) else f) for f in skipped[:3]) \
        + (", ..." if len(skipped) > 3 else "")
    if not files and skipped:
        raise ViclabError(f"{root} holds no {what}: its {len(skipped)} sound file(s) do not match the layout "
                          f"{layout} ({named}); rename or move them into that layout")
    if not files:
        raise ViclabError(f"{root} holds no {what}; check sound.* and the folder (sound files: "
                          f"{', '.join(sorted(EXTENSIONS))})")
    if skipped:
        # Never dropped without a word: a misnamed anomaly would silently shrink the test set.
        warnings.warn(f"{len(skipped)} sound file(s) of {root} do not match the layout {layout} and are skipped "
                      f"({named}); rename or move them to use them", ViclabWarning, stacklevel=2)
    return files


def _class_folders(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    """``root/{train,test}/<class>/*``, or a plain ``root/<class>/*`` as a test split."""
    base = root / split if any((root / s).is_dir() for s in ("train", "test")) else root
    if base is root and split == "train":
        raise ViclabError(f"sound folder {root} has no train/ and test/ sub-folders, so it holds no training clips; "
                          f"use the layout {root}/{{train,test}}/<class>/<file>")
    if not base.is_dir():
        raise ViclabError(f"sound folder {root} has no {split}/ sub-folder; add it (layout root/{split}/<class>/*)")
    out = [SoundFile(f, f.relative_to(base).parts[0] if f.parent != base else base.name) for f in sound_files(base)]
    # beside train/ and test/, a sound file is in no split
    skipped = [] if base is root else [f for f in sound_files(root) if f.relative_to(root).parts[0] not in
                                       ("train", "test")]
    return _require(out, base, "sound files", skipped, f"{root}/{{train,test}}/<class>/<file>")


_FSDD = re.compile(r"^(\d+)_([^_]+)_(\d+)$")


def _fsdd(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    out, skipped = [], []
    for f in sound_files(rec, recursive=False):
        m = _FSDD.match(f.stem)
        if not m:
            skipped.append(f)
            continue
        digit, speaker, index = m.groups()
        test = int(index) <= 4 if cfg.split == "index" else speaker in cfg.test_speakers
        if test == (split == "test"):
            out.append(SoundFile(f, digit if cfg.label == "class" else speaker, (("speaker", speaker),
                                                                                ("digit", digit))))
    return _require(out, rec, f"FSDD recordings ({{digit}}_{{speaker}}_{{index}}.wav) in its {split} split", skipped,
                    "{digit}_{speaker}_{index}.wav")


def _keep_machine(cfg: SoundConfig, machine: str, machine_id: str) -> bool:
    return (not cfg.machines or machine in cfg.machines) and (not cfg.machine_ids or machine_id in cfg.machine_ids)


def _seeded(cfg: SoundConfig, *key: str) -> np.random.Generator:
    """A generator seeded by ``cfg.seed`` and ``key`` alone: a group's choice does not depend on the others kept."""
    return np.random.default_rng(int(digest(["|".join((str(cfg.seed), *key))])[:8], 16))


def _at_most(files: list, cfg: SoundConfig, *key: str) -> list:
    """``sound.max_files`` of a group's files, a seeded choice kept in order (all when 0)."""
    if not cfg.max_files or len(files) <= cfg.max_files:
        return files
    keep = set(_seeded(cfg, "max_files", *key).permutation(len(files))[:cfg.max_files].tolist())
    return [f for i, f in enumerate(files) if i in keep]


def _mimii(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    groups: dict[tuple[str, str, str], list[Path]] = {}
    skipped = []
    for f in sound_files(root):
        condition, machine_id, machine = f.parent.name, f.parent.parent.name, f.parent.parent.parent.name
        if condition not in NORMAL_CLASSES or not machine_id.startswith("id_"):
            skipped.append(f)
        elif _keep_machine(cfg, machine, machine_id):
            groups.setdefault((machine, machine_id, condition), []).append(f)
    out = []
    for (machine, machine_id, condition), files in sorted(groups.items()):
        files = _at_most(files, cfg, machine, machine_id, condition)
        if condition == "abnormal":
            chosen = files if split == "test" else []
        else:
            # Seeded per machine ID and independent of which others are kept: the same files are test files
            # whether one ID or all are loaded.
            perm = _seeded(cfg, machine, machine_id).permutation(len(files))
            test = set(perm[:round(cfg.test_share * len(files))].tolist())
            chosen = [f for i, f in enumerate(files) if (i in test) == (split == "test")]
        out += [SoundFile(f, condition, (("machine", machine), ("machine_id", machine_id))) for f in chosen]
    return _require(out, root, f"MIMII clips (<machine>/id_XX/{{normal,abnormal}}/*.wav) in its {split} split",
                    skipped, "<machine>/id_XX/{normal,abnormal}/*.wav")


_DCASE = re.compile(r"^(normal|anomaly)_(id_\d+)_")


def _dcase(root: Path, split: str, cfg: SoundConfig) -> list[SoundFile]:
    groups: dict[tuple[str, str, str], list[Path]] = {}
    skipped = []
    for f in sound_files(root):
        m = _DCASE.match(f.name)
        if not m or f.parent.name not in ("train", "test"):
            skipped.append(f)
        if not m or f.parent.name != split:
            continue
        machine = f.parent.parent.name
        if _keep_machine(cfg, machine, m.group(2)):
            groups.setdefault((machine, m.group(2), "normal" if m.group(1) == "normal" else "abnormal"), []).append(f)
    out = [SoundFile(f, label, (("machine", machine), ("machine_id", mid)))
           for (machine, mid, label), files in sorted(groups.items())
           for f in _at_most(files, cfg, split, machine, mid, label)]
    return _require(out, root, f"DCASE clips (<machine>/{split}/{{normal,anomaly}}_id_XX_*.wav)", skipped,
                    "<machine>/{train,test}/{normal,anomaly}_id_XX_*.wav")


@dataclass(frozen=True)
class SoundLayout:
    """A registered sound dataset (in ``<data root>/<its name>``): how its files are found, and its class list:
    fixed, or ``"train"`` (the training split's labels, as image folders) or ``"all"`` (the labels of both
    splits: FSDD's held-out speakers are classes too); ``machine_ids``: every clip carries its machine type and ID."""

    files: Callable[[Path, str, SoundConfig], list[SoundFile]]
    classes: tuple[str, ...] | str = "train"
    machine_ids: bool = False


SOUND_DATASETS: dict[str, SoundLayout] = {
    "sounds": SoundLayout(_class_folders),
    "fsdd": SoundLayout(_fsdd, "all"),
    "mimii": SoundLayout(_mimii, NORMAL_CLASSES, machine_ids=True),
    "dcase": SoundLayout(_dcase, NORMAL_CLASSES, machine_ids=True),
}


@dataclass(frozen=True)
class Archive:
    """A publisher's archive of a sound set: where, its size and checksum, and the members kept."""

    urls: tuple[str, ...]
    name: str
    size: int
    digest: str
    algorithm: str
    members: str  # the archive's members kept (a regular expression on their paths)


# Checksums from the publishers' tables: Zenodo record 3384388's md5s for MIMII (as mirrored by
# datasets-mila/datasets--mimii); for FSDD v1.0.10 the SHA-256 of GitHub's tag archive.
DOWNLOADS: dict[str, list[Archive]] = {
    "fsdd": [Archive(("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.zip",),
                     "free-spoken-digit-dataset-1.0.10.zip", 16_419_872,
                     "c680098f5d2355ba7cc4bd8b0ca9e0a24c00ebe3b4c552208889a4d28d4fbc2b", "sha256",
                     r"^[^/]+/recordings/[^/]+\.wav$")],
    "mimii": [Archive((f"https://zenodo.org/records/3384388/files/{n}?download=1",
                       f"https://zenodo.org/record/3384388/files/{n}?download=1"), n, size, md5, "md5", r"\.wav$")
              for n, size, md5 in (("-6_dB_fan.zip", 10_878_096_548, "f02ae808a58d84b6815b7ec38ff30879"),
                                   ("-6_dB_slider.zip", 7_951_254_230, "49913eda7d37f182cbf8ed5c984140e0"))],
}


def fetch_sound(name: str, data_dir: Path, ctx: Context = DEFAULT_CONTEXT) -> Path:
    """Download a sound set's archives (checksummed) into ``data_dir/<name>`` and extract its sound
    files; the archives are removed once extracted. Returns the folder. Above 1 GB (MIMII) only with
    ``$VICLAB_DOWNLOAD=1`` (:func:`~viclab.data.download.allow_download`)."""
    import zipfile

    from viclab.data.download import allow_download, download

    folder = data_dir / name
    allow_download(sum(a.size for a in DOWNLOADS[name]), f"the {name} set is not in {data_dir} (no folder {folder})",
                   "give the folder that holds it (--data-dir or $VICLAB_DATA)")
    for a in DOWNLOADS[name]:
        ctx.echo(f"downloading {a.name} ({a.size / 1e9:.2f} GB) for the {name} set into {data_dir}")
        archive = download(list(a.urls), data_dir / a.name, a.digest, algorithm=a.algorithm,
                           hint=f"download {a.urls[0]} yourself and extract it into {folder}, or set VICLAB_DATA")
        target = folder / Path(a.name).stem if name == "mimii" else folder
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                if re.search(a.members, info.filename) and not info.is_dir():
                    rel = Path(info.filename)
                    out = target / (rel.relative_to(rel.parts[0]) if name == "fsdd" else rel)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write(out, lambda p, info=info: p.write_bytes(z.read(info)))
        archive.unlink()
    return folder


def sound_root(name: str, data_dir: str | os.PathLike) -> Path:
    """The folder of a sound dataset.

    ``data_dir/<name>`` (e.g. ``fsdd/``) when it exists; else ``data_dir`` itself when it is named so or
    holds sound files (the dataset's folder given directly); else, for a set with a public archive (FSDD,
    MIMII), the archive downloaded (checksummed) into ``data_dir/<name>``.
    """
    if name not in SOUND_DATASETS:
        raise ViclabError(f"unknown sound dataset {name!r}; choose one of: {', '.join(SOUND_DATASETS)}")
    data_dir = Path(data_dir).expanduser()
    root = data_dir / name
    if root.is_dir():
        return root
    if data_dir.is_dir() and (data_dir.name == root.name or sound_files(data_dir)):
        return data_dir
    if name in DOWNLOADS:
        return fetch_sound(name, data_dir)
    raise ViclabError(f"the {name} data folder {root} does not exist; give the folder that holds it (data.data_dir "
                      "or $VICLAB_DATA)")


def sound_fingerprint(name: str, data_dir: str | os.PathLike) -> dict[str, object]:
    """The number of sound files of a dataset's folder and a 128-bit hash of their paths and contents."""
    root = sound_root(name, data_dir)
    files = sound_files(root)
    if not files:
        raise ViclabError(f"{root} holds no sound files ({', '.join(sorted(EXTENSIONS))}); put the {name} files there")
    lines = (f"{f.relative_to(root)}|{file_digest(f)}\n" for f in files)
    return {"files": len(files), "hash": digest(lines, "blake2b", 16)}


def _decode_all(files: list[SoundFile], cfg: SoundConfig, ctx: Context) -> tuple[np.ndarray, list[int]]:
    """Every file's clips, joined, and how many each gave (in threads: libsndfile and soxr release the GIL)."""
    clip, hop = cfg.clip_samples, round(cfg.window_hop_seconds * cfg.rate)
    pieces = parallel(lambda f: cut(decode(f.path, cfg.rate, cfg.channel), clip, hop), files, "decoding sound",
                      min(8, os.cpu_count() or 1), not ctx.progress)
    return np.concatenate(pieces), [len(p) for p in pieces]


def _clips(name: str, split: str, root: Path, files: list[SoundFile], classes: tuple[str, ...], cfg: SoundConfig,
           use_cache: bool, ctx: Context) -> tuple[np.ndarray, list[int]]:
    """Every file's clips ``(sum(counts), clip_samples)`` and how many each file gave, from the ``sound`` cache
    (keyed by the files' paths, labels, attributes and content hashes and the decoding settings) or decoded. A
    damaged entry, or one with non-finite clips (decoding refuses them), is decoded again, which names the file."""
    if not use_cache:
        return _decode_all(files, cfg, ctx)
    store = CacheStore("sound")
    fields = [name, split, repr(cfg.rate), repr(cfg.channel), repr(cfg.clip_samples),
              repr(round(cfg.window_hop_seconds * cfg.rate)), "|".join(classes)]
    path = store.path(fields, [f"{f.path.relative_to(root)}|{f.label}|{f.attrs}|{file_digest(f.path)}\n"
                               for f in files], prefix=f"{name}-{split}-")
    try:
        counts = [int(c) for c in (store.read_text(path.with_suffix(COUNTS)) or "").split()]
    except ValueError:
        counts = []
    if len(counts) == len(files):
        clips = store.read(path, (sum(counts), cfg.clip_samples),
                           valid=lambda a: bool(np.isfinite(a.sum(dtype=np.float64))))
        if clips is not None:
            return clips, counts
    clips, counts = _decode_all(files, cfg, ctx)
    store.write(path, clips, {COUNTS: " ".join(map(str, counts)) + "\n"})
    return clips, counts


def load_sound(name: str, split: str, data_dir: str | os.PathLike, cfg: SoundConfig, use_cache: bool = True,
               ctx: Context = QUIET) -> SoundData:
    """A split of a sound dataset as clips, decoded once and then read from the cache.

    Args:
        name: a key of :data:`SOUND_DATASETS`, or ``sounds`` with ``data_dir`` the class folder itself.
        split: ``"train"`` or ``"test"``.
        data_dir: the data root (holding the dataset's folder, e.g. ``fsdd/``) or the dataset's folder.
        cfg: decoding, cutting and split settings.
        use_cache: read and write the decoded clips in the ``sound`` cache (:class:`~viclab.core.cache.CacheStore`),
            keyed by the files' content hashes, their labels and the decoding settings (never stale).
        ctx: ``progress``: a bar while files decode.
    """
    layout, root = SOUND_DATASETS.get(name), sound_root(name, data_dir)
    files = layout.files(root, split, cfg)
    classes = _split_classes(layout, root, split, files, cfg)
    clips, counts = _clips(name, split, root, files, classes, cfg, use_cache, ctx)
    rows = np.repeat(np.arange(len(files)), counts)
    index = {c: i for i, c in enumerate(classes)}
    attr_names = sorted({k for f in files for k, _ in f.attrs})
    return SoundData(
        clips=torch.from_numpy(np.ascontiguousarray(clips)),
        labels=torch.tensor([index[files[r].label] for r in rows], dtype=torch.int64),
        classes=classes, rate=cfg.rate,
        origin=np.array([str(files[r].path.relative_to(root)) for r in rows]),
        attrs={k: np.array([dict(files[r].attrs).get(k, "") for r in rows]) for k in attr_names},
        files=np.array([os.path.abspath(files[r].path) for r in rows], dtype=str),
        windows=np.concatenate([np.arange(c) for c in counts]) if cfg.window_hop_seconds > 0 else None)


def _split_classes(layout: SoundLayout, root: Path, split: str, files: list[SoundFile],
                   cfg: SoundConfig) -> tuple[str, ...]:
    """The class names, in label order: the layout's own, or sorted from the files (of the training split,
    so both splits map a class to the same index); refuses a test class the training split lacks."""
    if isinstance(layout.classes, tuple):
        classes = layout.classes
    else:  # one class -> index mapping for both splits, from sorted names
        try:
            other = layout.files(root, "test" if split == "train" else "train", cfg)
        except ViclabError:
            other = None  # a plain folder (test only): its own classes
        train = files if split == "train" else other
        names = {f.label for f in (train or files)} | ({f.label for f in files + (other or [])}
                                                       if layout.classes == "all" else set())
        classes = tuple(sorted(names))
    unknown = sorted({f.label for f in files} - set(classes))
    if unknown:
        raise ViclabError(f"the {split} split of {root} has classes the training split lacks ({', '.join(unknown)}); "
                          "give every test class training clips")
    return classes


def spectrograms(data: SoundData, cfg: SoundConfig, device: torch.device | str = "cpu") -> ImageData:
    """The clips' log-mel spectrograms as one-channel float "images": :class:`ImageData` of modality
    ``spectrogram``, ``images`` ``(N, 1, n_mels, frames)`` float32 (dB), with the clips' labels, classes, files,
    windows and attributes (machine ID, speaker, ...)."""
    if data.rate != cfg.rate:
        raise ValueError(f"clips at {data.rate} Hz, features configured for {cfg.rate} Hz")
    return ImageData(logmel_batches(data.clips, cfg, device), data.labels, data.classes, data.files, data.windows,
                     "spectrogram", data.attrs)
