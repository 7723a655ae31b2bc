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


def _planted(tmp_path: Path, module: str, imported: str) -> subprocess.CompletedProcess:
    """The contract checked on a copy of the package whose ``module`` (a path under viclab/) imports
    ``imported`` inside a function: a function-level import hides a cycle from Python, not from the checker."""
    shutil.copytree(ROOT / "src" / "viclab", tmp_path / "src" / "viclab",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / "src" / "viclab" / module
    target.write_text(target.read_text() + f"\n\ndef _planted():\n    {imported}\n")
    return _lint(tmp_path, tmp_path / "src")


def test_layers_contract_fails_on_a_planted_upward_import(tmp_path):
    out = _planted(tmp_path, "engine/loop.py", "from viclab.represent.encode import load_source")
    assert out.returncode != 0
    assert "viclab.engine is not allowed to import viclab.represent" in out.stdout
    assert "viclab.engine.loop -> viclab.represent.encode" in out.stdout


def test_the_bottom_layer_may_not_import_the_config(tmp_path):
    """core is beneath config: a planted ``viclab.core.io -> viclab.config`` import breaks the contract."""
    out = _planted(tmp_path, "core/io.py", "from viclab.config import Config")
    assert out.returncode != 0
    assert "viclab.core is not allowed to import viclab.config" in out.stdout
