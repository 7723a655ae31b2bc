"""Imports flow one way (pyproject's import-linter layers contract), and the check catches a violation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_layers_contract_holds():
    out = _lint(ROOT, ROOT / "src")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 kept, 0 broken" in out.stdout


def test_layers_contract_fails_on_a_planted_upward_import(tmp_path):
    shutil.copytree(ROOT / "src" / "viclab", tmp_path / "src" / "viclab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "src" / "viclab" / "engine" / "loop.py"
    # A function-level import hides a cycle from Python but not from the checker.
    target.write_text(target.read_text() + "\n\ndef _planted():\n    from viclab.represent.encode import load_source\n"
                      "    return load_source\n")
    out = _lint(tmp_path, tmp_path / "src")
    assert out.returncode != 0
    assert "viclab.engine is not allowed to import viclab.represent" in out.stdout
    assert "viclab.engine.loop -> viclab.represent.encode" in out.stdout


def test_the_bottom_layer_may_not_import_the_config(tmp_path):
    """core is beneath config: a planted ``viclab.core.io -> viclab.config`` import breaks the contract."""
    shutil.copytree(ROOT / "src" / "viclab", tmp_path / "src" / "viclab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "src" / "viclab" / "core" / "io.py"
    planted = "\n\ndef _planted():\n    from viclab.config import Config\n    return Config\n"
    target.write_text(target.read_text() + planted)
    out = _lint(tmp_path, tmp_path / "src")
    assert out.returncode != 0
    assert "viclab.core is not allowed to import viclab.config" in out.stdout
