"""Atomic writes: a failed write leaves the previous file untouched and no debris."""

from __future__ import annotations

import os

import pytest

from viclab.core.io import atomic_write, atomic_write_text


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


def test_writer_that_replaces_the_file_still_gets_normal_permissions(tmp_path):
    # safetensors' save_file creates its file anew (mode 0600 from the umask-free create path)
    def replace_file(p):
        p.unlink()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x")
        os.close(fd)

    umask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "w.safetensors", replace_file)
    finally:
        os.umask(umask)
    assert (path.stat().st_mode & 0o777) == 0o644
