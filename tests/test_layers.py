"""The house: the package's layering and import acyclicity (import-linter), lint and format (ruff).

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``, ``[tool.ruff]``); these tests run the
tools on the source tree, so a circle, an upward import, a lint finding or an unformatted file fails CI
with the tool's own report.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[dev]'")
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_layers_and_no_circles() -> None:
    proc = run(tool("lint-imports"), "--no-cache")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "2 kept, 0 broken" in proc.stdout


def test_ruff_lint() -> None:
    proc = run(tool("ruff"), "check", "ctvl", "pipelines", "app", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_ruff_format() -> None:
    proc = run(tool("ruff"), "format", "--check", "ctvl", "pipelines", "app", "tests")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_constructors_are_keyword_only() -> None:
    """Every public class in ctvl takes its constructor arguments by keyword (exceptions excepted)."""
    positional = []
    for path in sorted((REPO / "ctvl").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_") or node.name.endswith("Error"):
                continue
            for fn in node.body:
                if isinstance(fn, ast.FunctionDef) and fn.name == "__init__":
                    args = fn.args.posonlyargs + fn.args.args
                    if len(args) > 1:
                        positional.append(f"{path.relative_to(REPO)}:{fn.lineno} {node.name}({args[1].arg}, ...)")
    assert not positional, "constructors with positional parameters:\n" + "\n".join(positional)
