"""Atomic writes: a failed write leaves the previous file untouched and no debris."""

from __future__ import annotations

import os

import pytest

from viclab.io import atomic_write, atomic_write_text


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "ckpt.bin"
    atomic_write_text(path, "old")

    def broken(p):
        p.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["ckpt.bin"]


def test_new_file_has_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a" / "config.json", "{}")
    finally:
        os.umask(umask)
    assert path.read_text() == "{}" and (path.stat().st_mode & 0o777) == 0o644
