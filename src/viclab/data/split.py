"""Split a folder of class sub-folders into train/val/test folders (``viclab split``).

``SRC/<class>/<image>`` (images anywhere below each class folder) becomes ``DST/{train,val,test}/<class>/...``
(with two ratios ``train`` and ``test`` only), the layout :func:`viclab.data.folder.load_split_folder` reads, plus
``DST/manifest.csv``: stratified, reproducible and written only when complete (:func:`split_folder`).
"""

from __future__ import annotations

import csv
import math
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from viclab.core.errors import ViclabError
from viclab.core.hashing import digest, file_digest
from viclab.core.io import atomic_write, check_writable_dir
from viclab.data.folder import EXTENSIONS, hidden, subfolders, visible

SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "val", "test")}
MODES = ("symlink", "copy", "hardlink")
MANIFEST = "manifest.csv"
DUPLICATE = "duplicate"  # the manifest's split of a file dropped as a copy of another
MANIFEST_COLUMNS = ("source", "split", "class", "sha256")


@dataclass(frozen=True)
class SplitReport:
    """What :func:`split_folder` did.

    Attributes:
        dst: the folder written.
        splits: split names, in the order of the ratios.
        classes: class names (sorted).
        counts: ``counts[split][class]``, the images placed there.
        skipped: files that are not images by their extension (hidden files not counted).
        duplicates: files dropped because an earlier file (by sorted relative path) of their class has the same bytes.
        manifest: ``dst/manifest.csv``.
    """

    dst: Path
    splits: tuple[str, ...]
    classes: tuple[str, ...]
    counts: dict[str, dict[str, int]]
    skipped: int
    duplicates: int
    manifest: Path

    def total(self, split: str) -> int:
        """Images placed in ``split``, all classes together."""
        return sum(self.counts[split].values())

    def summary(self) -> str:
        """One line for people, e.g. ``train 80, val 10, test 10 images of 2 classes; ...``."""
        sizes = ", ".join(f"{s} {self.total(s)}" for s in self.splits)
        classes = f"{len(self.classes)} class{'es' if len(self.classes) != 1 else ''}"
        return (f"{sizes} images of {classes} in {self.dst}; {self.duplicates} duplicates "
                f"dropped, {self.skipped} non-image files skipped; manifest {self.manifest}")


@dataclass(frozen=True)
class _File:
    source: str  # path relative to SRC, POSIX separators: "<class>/<path inside the class folder>"
    cls: str
    sha256: str


def apportion(n: int, ratios: Sequence[float]) -> list[int]:
    """Share ``n`` files (0 or more) among splits by positive ``ratios``: largest-remainder (Hamilton) apportionment.

    Each split first gets the whole part of its quota ``n * ratio / sum(ratios)``; the files left over go one
    each to the splits with the largest fractional parts, ties to the earlier split. Ratios count as the
    decimals they print as (``0.1`` is exactly 1/10), so float rounding never moves a file. Examples:
    ``n=10, (0.8, 0.1, 0.1) -> [8, 1, 1]``; ``n=7, (0.5, 0.25, 0.25) -> [3, 2, 2]``; ``n=2, (0.8, 0.1, 0.1) ->
    [2, 0, 0]``.
    """
    return _apportion(n, [_exact(r) for r in ratios])


def _exact(r: float) -> Fraction:
    # repr is the shortest decimal that reads back as the same float: 0.1 -> 1/10, not 0.1000000000000000055...
    return Fraction(repr(float(r)))


def _apportion(n: int, weights: list[Fraction]) -> list[int]:
    total = sum(weights)
    quotas = [n * w / total for w in weights]
    seats = [math.floor(q) for q in quotas]
    by_remainder = sorted(range(len(quotas)), key=lambda i: (seats[i] - quotas[i], i))
    for i in by_remainder[: n - sum(seats)]:
        seats[i] += 1
    return seats


def _minimum_size(weights: list[Fraction]) -> int:
    """The smallest class size from which on every split gets at least one file."""
    enough = m = math.ceil(sum(weights) / min(weights))  # every quota is at least 1 from here on
    # Hamilton apportionment is not monotone in n (the Alabama paradox), so walk down only while
    # smaller sizes still fill every split; bounded, since this only words an error message.
    while m > 1 and enough - m < 100_000 and min(_apportion(m - 1, weights)) > 0:
        m -= 1
    return m


def _check_args(ratios: Sequence[float], seed: int, mode: str,
                names: Sequence[str] | None) -> tuple[tuple[str, ...], list[Fraction]]:
    """The split names and exact ratios, or the first argument error (checked in this order)."""
    if mode not in MODES:
        raise ViclabError(f"unknown mode {mode!r}; use one of: {', '.join(MODES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ViclabError(f"the seed must be a whole number 0 or larger, got {seed!r}; give e.g. --seed 0")
    try:
        values = [float(r) for r in ratios]
    except (TypeError, ValueError):
        raise ViclabError(f"ratios must be numbers, got {list(ratios)!r}; give e.g. --ratios 0.8 0.1 0.1") from None
    shown = " ".join(f"{r:g}" for r in values)
    names = _check_names(names, len(values), shown)
    if not all(math.isfinite(r) and r > 0 for r in values):
        raise ViclabError(f"ratios must be positive, got {shown}; give e.g. --ratios 0.8 0.1 0.1")
    if abs(sum(values) - 1) > 1e-6:
        raise ViclabError(f"ratios must sum to 1, got {shown} (sum {sum(values):.6g}); give e.g. --ratios 0.8 0.1 0.1")
    return names, [_exact(r) for r in values]


def _check_names(names: Sequence[str] | None, n: int, shown: str) -> tuple[str, ...]:
    """The split names for ``n`` ratios (``shown`` as given): the caller's, or the default ones for 2 or 3."""
    if names is None:
        if n not in SPLIT_NAMES:
            raise ViclabError(f"give 2 ratios (train test) or 3 (train val test), got {n}: {shown}; "
                              "e.g. --ratios 0.8 0.1 0.1")
        names = SPLIT_NAMES[n]
    names = tuple(names)
    if len(names) != n or n < 2:
        raise ViclabError(f"give one ratio per split and at least 2 splits, got ratios {shown} for splits "
                          f"{', '.join(names)}")
    bad = [s for s in names if not s or s in (".", "..", MANIFEST, DUPLICATE) or s.startswith(".")
           or "/" in s or os.sep in s]
    if bad or len(set(names)) != len(names):
        raise ViclabError(f"split names must be distinct plain folder names (not hidden, not {MANIFEST!r} or "
                          f"{DUPLICATE!r}), got {', '.join(map(repr, names))}")
    return names


def _check_folders(src: Path, dst: Path) -> None:
    fix = "give a folder of class sub-folders (SRC/<class>/<image>)"
    if not src.exists():
        raise ViclabError(f"source folder {src} does not exist; {fix}")
    if not src.is_dir():
        raise ViclabError(f"source {src} is a file, not a folder; {fix}")
    if dst.exists() and not dst.is_dir():
        raise ViclabError(f"destination {dst} is a file; choose a new DST folder")
    if dst.is_dir() and any(dst.iterdir()):
        raise ViclabError(f"destination {dst} exists and is not empty; choose a new DST or remove it")
    real_src, real_dst = src.resolve(), dst.resolve()
    if real_dst == real_src or real_src in real_dst.parents:
        raise ViclabError(f"destination {dst} lies inside the source folder {src}; choose a DST outside it")
    check_writable_dir(dst, "destination folder")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in EXTENSIONS and path.is_file()


def _scan(src: Path) -> tuple[dict[str, list[Path]], int]:
    """Each class's image files (sorted by relative path) and the number of non-image files."""
    classes = subfolders(src)
    top = [p for p in src.iterdir() if visible(p) and not p.is_dir()]
    top_images = [p for p in top if _is_image(p)]
    if not classes:
        what = f"holds {len(top_images)} images but" if top_images else "has"
        raise ViclabError(f"{src} {what} no class sub-folders; put the images into one folder per class "
                          f"({src}/<class>/<image>)")
    if top_images:
        raise ViclabError(f"{src} holds {len(top_images)} images outside its class sub-folders (e.g. "
                          f"{top_images[0].name}); move them into a class folder or out of {src}")
    skipped = len(top)  # a README beside the class folders, say
    images = {}
    for c in classes:
        found = [p for p in (src / c).rglob("*") if not hidden(p, src) and not p.is_dir()]
        images[c] = sorted((p for p in found if _is_image(p)), key=lambda p: p.relative_to(src).as_posix())
        # a broken link named like an image counts here too: it cannot be placed
        skipped += len(found) - len(images[c])
        if not images[c]:
            raise ViclabError(f"class {c!r} ({src / c}) has no images ({', '.join(sorted(EXTENSIONS))}); add images "
                              "or remove the folder")
    return images, skipped


def _sha256(path: Path) -> str:
    try:
        return file_digest(path, "sha256", None)
    except OSError as e:
        raise ViclabError(f"cannot read {path} ({e.strerror or e}); fix its permissions or remove it") from None


def _dedupe(src: Path, images: dict[str, list[Path]]) -> tuple[dict[str, list[_File]], list[_File]]:
    """Each class's files with distinct bytes, and the dropped copies."""
    first: dict[str, _File] = {}
    kept: dict[str, list[_File]] = {c: [] for c in images}
    dropped = []
    for source, c in sorted((p.relative_to(src).as_posix(), c) for c, paths in images.items() for p in paths):
        f = _File(source, c, _sha256(src / source))
        earlier = first.setdefault(f.sha256, f)
        if earlier is f:
            kept[c].append(f)
        elif earlier.cls == c:
            dropped.append(f)
        else:
            raise ViclabError(f"{src / earlier.source} (class {earlier.cls!r}) and {src / source} (class {c!r}) "
                              "have identical bytes: one image with two labels; remove the wrong one")
    return kept, dropped


def _plan(kept: dict[str, list[_File]], dropped: list[_File], names: tuple[str, ...], weights: list[Fraction],
          seed: int) -> list[tuple[_File, str]]:
    """``(file, split)`` for every file, dropped copies with split :data:`DUPLICATE`, sorted by source."""
    plan = [(f, DUPLICATE) for f in dropped]
    too_small = []
    for c, files in kept.items():
        sizes = _apportion(len(files), weights)
        if min(sizes) == 0:
            too_small.append((c, len(files), sizes))
            continue
        # Dealt out in the order of a keyed hash of the relative path (hex: sorts as the bytes do): a fixed
        # shuffle per (seed, path), whatever the listing order, and independent of the other classes' files.
        ordered = iter(sorted(files, key=lambda f: digest([f"{seed}\0{f.source}"])))
        plan += [(next(ordered), name) for name, size in zip(names, sizes) for _ in range(size)]
    if too_small:
        c, n, sizes = too_small[0]
        empty = names[sizes.index(0)]
        got = ", ".join(f"{s} {k}" for s, k in zip(names, sizes))
        others = f" (and {len(too_small) - 1} more classes)" if len(too_small) > 1 else ""
        distinct = " distinct" if any(f.cls == c for f in dropped) else ""
        raise ViclabError(f"class {c!r} has {n}{distinct} images: split {empty!r} would get none ({got}){others}; "
                          f"give each class at least {_minimum_size(weights)} images or change the ratios (--ratios)")
    return sorted(plan, key=lambda fs: fs[0].source)


def _place(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(source, target)
    elif mode == "copy":
        shutil.copy2(source, target)
    else:
        try:
            os.link(source, target)
        except OSError as e:
            raise ViclabError(f"cannot hard-link {source} into {target.parent} ({e.strerror or e}): the "
                              "file system refuses (SRC and DST on different devices, say); use --mode copy or --mode "
                              "symlink") from None


def _write_manifest(path: Path, plan: list[tuple[_File, str]]) -> None:
    def write(tmp: Path) -> None:
        # surrogateescape: a file name that is not valid UTF-8 is written byte for byte, not refused
        with open(tmp, "w", newline="", encoding="utf-8", errors="surrogateescape") as f:
            out = csv.writer(f)
            out.writerow(MANIFEST_COLUMNS)
            out.writerows((file.source, split, file.cls, file.sha256) for file, split in plan)

    atomic_write(path, write)


def split_folder(src: str | os.PathLike, dst: str | os.PathLike, ratios: Sequence[float] = (0.8, 0.1, 0.1),
                 seed: int = 0, mode: str = "symlink", names: Sequence[str] | None = None) -> SplitReport:
    """Split ``SRC/<class>/...`` into ``DST/<split>/<class>/...``, stratified and reproducible.

    Which files count: below each class folder, recursively, every file whose extension is in
    :data:`viclab.data.folder.EXTENSIONS`; hidden files and folders are ignored, other files are skipped and
    counted. Images are not decoded here: an unreadable image is placed like the others, and the loader names it.

    Duplicates: a file with the bytes (SHA-256) of an earlier one (by sorted relative path) of its class is
    dropped (in the manifest with split ``duplicate``, and counted), so no image is in two splits; the same
    bytes in two classes are an error (one image, two labels).

    Assignment: every class's distinct files are shared by :func:`apportion` (a class that would leave a split
    empty is an error naming the smallest class size that fills every split: 7 at ``0.8 0.1 0.1``), dealt out
    (train, then val, then test) in the order of SHA-256 of ``"<seed>\\0<relative path>"``.

    Writing: everything is checked, hashed and planned first; the files are then placed in a hidden sibling
    ``.DST.tmp-<pid>``, renamed to ``DST`` at the end (removed on failure; a killed process can leave it
    behind). Destination names keep each file's path inside its class folder.

    Args:
        src: the folder of class sub-folders.
        dst: the output folder; must not exist, or be empty (never overwritten).
        ratios: one positive ratio per split, summing to 1 (within 1e-6): 3 ratios make ``train``, ``val`` and
            ``test``; 2 make ``train`` and ``test``.
        seed: 0 or more; another seed deals the files differently.
        mode: ``symlink`` (absolute links to the sources), ``copy`` (:func:`shutil.copy2`, keeping timestamps) or
            ``hardlink`` (same file system only).
        names: split names instead of the defaults, one per ratio (the folder loader needs a ``train`` split).

    Returns:
        :class:`SplitReport`, counts per split and class.

    Raises:
        ViclabError: a bad argument, ``SRC`` missing or without class folders, a class without images or too
            small for the ratios, the same image in two classes, ``DST`` not empty or inside ``SRC``, or a failed
            write (then nothing is left at ``DST``).
    """
    names, weights = _check_args(ratios, seed, mode, names)
    src, dst = Path(src), Path(os.path.abspath(dst))  # abspath: DST "." or "x/.." still has a name
    _check_folders(src, dst)
    images, skipped = _scan(src)
    kept, dropped = _dedupe(src, images)
    plan = _plan(kept, dropped, names, weights, seed)
    root = src.resolve()  # symlinks point at absolute paths

    tmp = dst.parent / f".{dst.name}.tmp-{os.getpid()}"
    try:
        if tmp.exists():  # debris of an earlier process with this pid
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        for f, split in plan:
            if split != DUPLICATE:
                _place(root / f.source, tmp / split / f.source, mode)
        _write_manifest(tmp / MANIFEST, plan)
        if dst.exists():
            dst.rmdir()  # empty (checked): rename needs the name free
        tmp.rename(dst)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ViclabError(f"cannot write the split to {dst} ({e.strerror or e}); nothing was written there, "
                              "fix the cause and run the same command again") from None
        raise

    placed = Counter((split, f.cls) for f, split in plan)
    counts = {s: {c: placed[s, c] for c in kept} for s in names}
    return SplitReport(dst=dst, splits=names, classes=tuple(kept), counts=counts, skipped=skipped,
                       duplicates=len(dropped), manifest=dst / MANIFEST)
