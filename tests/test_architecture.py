"""The import architecture of ffr_lib: the import-linter contracts of pyproject.toml hold (layers,
no dagster), and ffr_lib modules import each other at module top, so every dependency between
them is visible where the module starts (imports inside functions are for heavy optional
libraries only)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ffr_lib
from ffr_lib.data import readers

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(ffr_lib.__file__).resolve().parent

# Modules (and packages, with everything under them) that may import ffr_lib modules inside
# functions, with the reason. Nothing else may: a lazy internal import hides a dependency and
# was how the old cycles between subpackages went unnoticed.
LAZY_INTERNAL_IMPORTS_ALLOWED = {
    # Each command imports its implementation when it runs, so `ffr --help` and the shell
    # completion stay fast (~0.15 s) instead of loading the database drivers, numpy and every
    # stage. The CLI is the top layer: nothing imports it, so it can hide no cycle.
    "ffr_lib.cli": "ffr --help stays fast",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _allowed(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in LAZY_INTERNAL_IMPORTS_ALLOWED)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:  # relative: resolve against the importing module's package
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        return [".".join([*base, *([node.module] if node.module else [])])]
    return [node.module or ""]


def _function_level_internal_imports(source: str, module: str, is_package: bool) -> list[str]:
    """``line: name`` of every ffr_lib import inside a function (methods and nested ones too)."""
    found: list[str] = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import | ast.ImportFrom):
                for name in _imported(child, module, is_package):
                    if name == "ffr_lib" or name.startswith("ffr_lib."):
                        found.append(f"{child.lineno}: {name}")
            walk(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    walk(ast.parse(source), False)
    return found


def test_import_linter_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    assert lint_imports.exists(), "import-linter is not installed (pip install -e '.[dev]')"
    result = subprocess.run(
        [str(lint_imports), "--no-logo", "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 broken" in result.stdout, result.stdout


def test_no_function_level_imports_of_ffr_lib() -> None:
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if _allowed(module):
            continue
        source = path.read_text(encoding="utf-8")
        for found in _function_level_internal_imports(source, module, path.name == "__init__.py"):
            offending.append(f"{path.relative_to(ROOT)}:{found}")
    assert not offending, (
        "import these at module top (function-level imports are for heavy optional libraries "
        "only; a cycle is fixed by moving code, not by a lazy import):\n" + "\n".join(offending)
    )


def test_the_check_finds_function_level_imports() -> None:
    source = (
        "import ffr_lib.data\n"
        "from ffr_lib.db import connect\n"
        "def f():\n"
        "    import torch\n"
        "    from ffr_lib.index import search\n"
        "class C:\n"
        "    def m(self):\n"
        "        def inner():\n"
        "            from . import texttiling\n"
    )
    found = _function_level_internal_imports(source, "ffr_lib.segment.windows", False)
    assert found == ["5: ffr_lib.index", "9: ffr_lib.segment"]
    assert _allowed("ffr_lib.cli.search") and _allowed("ffr_lib.cli")
    assert not _allowed("ffr_lib.clients") and not _allowed("ffr_lib.index.search")


def test_reader_registry_stays_in_the_data_layer() -> None:
    """The readers are imported by name (lazily, on first use): those names are dependencies of
    ``ffr_lib.data`` that import-linter cannot see, so they must stay inside it."""
    modules = [spec[1] for spec in readers._READERS.values()]
    assert modules
    assert all(m.startswith("ffr_lib.data.") for m in modules), modules


def test_readme_layout_names_every_package_of_ffr_lib() -> None:
    """The README's layout row for ffr_lib lists every package and top-level module."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    row = next(
        line
        for line in (root / "README.md").read_text(encoding="utf-8").splitlines()
        if line.startswith("| `ffr_lib/` |")
    )
    named = set(re.findall(r"`([a-z_0-9]+)`", row))
    present = {
        p.stem if p.is_file() else p.name
        for p in (root / "ffr_lib").iterdir()
        if (p.is_dir() and (p / "__init__.py").exists())
        or (p.suffix == ".py" and p.stem != "__init__")
    }
    assert present <= named, f"add to the README layout: {sorted(present - named)}"
    assert named - {"make", "lint"} - present <= {"format", "readers", "gold"}, sorted(
        named - present
    )
