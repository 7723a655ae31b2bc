"""The content hashes: one for files (streamed), one for sequences of strings, bytes and tensors.

Every hash viclab records or keys a cache by goes through these two functions. The algorithm is a parameter only
because recorded values must stay what they were: BLAKE2b-128 for data (image and sound files, split fingerprints),
SHA-256 for weights, code and cache keys; downloads are checked with their publishers' md5 or sha256.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from typing import Any

CHUNK = 1 << 20  # bytes read at a time: a large file is never held in memory whole


def _new(algorithm: str, digest_size: int | None):
    return hashlib.new(algorithm, digest_size=digest_size) if digest_size else hashlib.new(algorithm)


def file_digest(path: str | os.PathLike, algorithm: str = "blake2b", digest_size: int | None = 16) -> str:
    """The hex digest of a file's bytes, read in chunks.

    Args:
        path: the file.
        algorithm: a :func:`hashlib.new` name; the default (BLAKE2b, 128 bits) keys the data caches and fingerprints.
        digest_size: bytes of a BLAKE2 digest; ``None`` for the others (md5, sha256).

    Raises:
        OSError: the file cannot be read.
    """
    h = _new(algorithm, digest_size if algorithm.startswith("blake2") else None)
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def _bytes(part: Any):
    """A part's bytes: text as UTF-8, a tensor or array as its elements' raw bytes (C order)."""
    if isinstance(part, str):
        return part.encode("utf-8", "surrogateescape")
    if isinstance(part, (bytes, bytearray, memoryview)):
        return part
    if hasattr(part, "detach"):  # a torch tensor, on any device and of any dtype (bfloat16 too)
        import torch

        return part.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy()
    import numpy as np

    return np.ascontiguousarray(part).reshape(-1).view(np.uint8)


def digest(parts: Iterable[Any], algorithm: str = "sha256", digest_size: int | None = None) -> str:
    """The hex digest of ``parts`` fed in order (a generator is consumed once): strings (UTF-8), bytes, tensors
    ``(...)`` or arrays (raw bytes), e.g. a state dict's names, shapes and dtypes interleaved with its tensors.

    ``algorithm`` is a :func:`hashlib.new` name; ``digest_size`` the bytes of a BLAKE2 digest (``None``: its own).
    """
    h = _new(algorithm, digest_size)
    for part in parts:
        h.update(_bytes(part))
    return h.hexdigest()


__all__ = ["digest", "file_digest"]
