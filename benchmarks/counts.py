"""Structure counts of a viclab source tree, to compare code versions (issue 25's acceptance table).

Each count is computed from the source alone (``ast`` and ``radon``), so anyone can run it on any checkout:

    python benchmarks/counts.py --src /tmp/base/src --src src --out benchmarks/results/counts.json
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

TERMS = {"invariance", "variance", "covariance"}


def _modules(src: Path) -> list[Path]:
    return sorted(p for p in (src / "viclab").rglob("*.py") if "__pycache__" not in p.parts)


def _calls(tree: ast.AST, attr: str) -> int:
    return sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == attr
               for n in ast.walk(tree))


def _hash_helpers(tree: ast.AST) -> int:
    """Functions whose own body calls ``hashlib``: each is a place that decides how something is hashed."""
    count = 0
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        if any(isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "hashlib"
               for n in ast.walk(fn)):
            count += 1
    return count


def _params(tree: ast.AST, name: str) -> int:
    return sum(any(a.arg == name for a in (*n.args.args, *n.args.kwonlyargs))
               for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))


def _cli_shapes(cli: Path) -> dict[str, int]:
    text = cli.read_text() if cli.exists() else ""
    return {"add_argument calls": text.count(".add_argument("),
            "--no-progress declarations": text.count('"--no-progress"'),
            "override strings built from flags": len(re.findall(r'f"[a-z_]+\.[a-z_]+=\{', text))}


def _line_kinds(text: str, tree: ast.AST, kinds: dict[str, int]) -> None:
    """Add each line to its kind: a docstring (the first string constant of a module, class or function),
    a comment (starts with ``#``), blank, or code."""
    doc: set[int] = set()
    for n in ast.walk(tree):
        body = getattr(n, "body", None)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0].value, "value", None), str):
            doc.update(range(body[0].lineno, body[0].end_lineno + 1))
    for i, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        kind = "blank" if not s else "docstring" if i in doc else "comment" if s.startswith("#") else "code"
        kinds[kind] += 1


def counts(src: Path) -> dict[str, object]:
    lines = terms = floating = sound = hashers = caches = 0
    params = {"progress": 0, "echo": 0, "data_dir": 0}
    sites: list[str] = []
    kinds = {"code": 0, "docstring": 0, "comment": 0, "blank": 0}
    for path in _modules(src):
        text = path.read_text()
        tree = ast.parse(text)
        lines += len(text.splitlines())
        _line_kinds(text, tree, kinds)
        terms += sum(isinstance(n, ast.Constant) and n.value in TERMS for n in ast.walk(tree))
        f, s = _calls(tree, "is_floating_point"), text.count("is_sound(")
        floating, sound = floating + f, sound + s
        if f or s:
            sites.append(f"{path.relative_to(src)}: is_floating_point {f}, is_sound {s}")
        hashers += _hash_helpers(tree)
        caches += len(re.findall(r"^\s*[A-Z_]*CACHE_VERSIONS?\s*[:=]", text, re.M))
        for name in params:
            params[name] += _params(tree, name)
    radon = subprocess.run([sys.executable, "-m", "radon", "cc", "-n", "D", str(src / "viclab")],
                           capture_output=True, text=True).stdout
    complex_ = [line.strip() for line in radon.splitlines() if line.startswith("    ")]
    return {"src lines": lines, "src lines by kind": kinds, "radon cc -n D": complex_, "term-name literals": terms,
            "is_floating_point() calls": floating, "is_sound( calls": sound, "modality sites": sites,
            "hash helpers (functions calling hashlib)": hashers, "cache version constants": caches,
            "functions taking progress / echo / data_dir": params, "cli": _cli_shapes(src / "viclab" / "cli.py")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", action="append", required=True, help="a src/ folder (repeat: before, after)")
    ap.add_argument("--out")
    args = ap.parse_args()
    result = {s: counts(Path(s).resolve()) for s in args.src}
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
