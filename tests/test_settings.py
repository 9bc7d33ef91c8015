"""One table of environment variables: the registry in ffr_lib/settings.py.

Every ``FFR_*`` name in the code, the docs and the deployment files is in the registry; every
literal environment read in the code names a registered variable; every registered variable is
read somewhere; README.md's table is the registry's; and a variable parses, falls back and honours
its old names as documented.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ffr_lib import settings
from ffr_lib.settings import (
    DEPLOYMENT_ONLY,
    HOME,
    PG_PORT,
    PROGRESS,
    PROGRESS_EVERY,
    TORCH_THREADS,
    VARIABLES,
    Variable,
    known_names,
    settings_table,
)

ROOT = Path(__file__).resolve().parents[1]
CODE_DIRS = ("ffr_lib", "ffr_assets")
FFR_NAME = re.compile(r"\bFFR_[A-Z][A-Z0-9_]*\b")

# FFR variables still read with os.environ outside ffr_lib/settings.py: file -> names. Only shrink
# this list (read them through their registry entry, ``REPORTS_DIR.get()``).
AD_HOC_READS_ALLOWED: dict[str, set[str]] = {}


def _code_files() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def _doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "Makefile"]
    files += sorted((ROOT / "docs").glob("*.md"))
    files += sorted(p for p in (ROOT / "infra").rglob("*") if p.is_file())
    return [p for p in files if p.is_file()]


def _is_environ(node: ast.AST) -> bool:
    """``os.environ`` (or a bare ``environ``)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def environment_reads(source: str) -> set[str]:
    """Names read with a literal key: ``os.environ.get("X")``, ``os.getenv("X")``,
    ``os.environ["X"]`` (load) and ``"X" in os.environ``. Writes (setdefault, assignment) are
    not reads."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        key: ast.AST | None = None
        if isinstance(node, ast.Call) and node.args:
            func = node.func
            if isinstance(func, ast.Attribute) and (
                (func.attr == "get" and _is_environ(func.value)) or func.attr == "getenv"
            ):
                key = node.args[0]
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            if _is_environ(node.value):
                key = node.slice
        elif (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In | ast.NotIn)
            and _is_environ(node.comparators[0])
        ):
            key = node.left
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            names.add(key.value)
    return names


def _registry_constants() -> dict[str, Variable]:
    return {name: v for name, v in vars(settings).items() if isinstance(v, Variable)}


def test_the_ast_scan_finds_reads_and_skips_writes() -> None:
    source = (
        "import os\nfrom os import environ\n"
        "a = os.environ.get('FFR_A')\nb = os.getenv('FFR_B', '1')\nc = os.environ['FFR_C']\n"
        "d = 'FFR_D' in os.environ\ne = environ.get('FFR_E')\n"
        "os.environ.setdefault('FFR_W', '1')\nos.environ['FFR_X'] = '1'\n"
    )
    assert environment_reads(source) == {"FFR_A", "FFR_B", "FFR_C", "FFR_D", "FFR_E"}


def test_every_registry_constant_is_in_the_table_once() -> None:
    constants = _registry_constants()
    assert set(map(id, constants.values())) == set(map(id, VARIABLES))
    names = [name for v in VARIABLES for name in (v.name, *v.aliases)]
    assert len(names) == len(set(names)), "a name is registered twice"
    assert all(v.meaning.strip() for v in VARIABLES)


def test_every_ffr_name_in_the_code_is_registered() -> None:
    known = known_names() | set(DEPLOYMENT_ONLY)  # those are named, never read (next test)
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _code_files()
        for name in FFR_NAME.findall(path.read_text(encoding="utf-8"))
        if name not in known
    }
    assert not unknown, "register these in ffr_lib/settings.py:\n" + "\n".join(sorted(unknown))


def test_every_literal_environment_read_names_a_registered_variable() -> None:
    unknown, ad_hoc = [], []
    for path in _code_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative == "ffr_lib/settings.py":
            continue
        for name in environment_reads(path.read_text(encoding="utf-8")):
            if name not in known_names():
                unknown.append(f"{relative}: {name}")
            elif name.startswith("FFR_") and name not in AD_HOC_READS_ALLOWED.get(relative, ()):
                ad_hoc.append(f"{relative}: {name}")
    assert not unknown, "register these in ffr_lib/settings.py:\n" + "\n".join(unknown)
    assert not ad_hoc, "read these through ffr_lib.settings (NAME.get()):\n" + "\n".join(ad_hoc)


def test_every_registered_variable_is_read_somewhere() -> None:
    sources = {p: p.read_text(encoding="utf-8") for p in _code_files()}
    literal_reads = {n for text in sources.values() for n in environment_reads(text)}
    everything = "\n".join(sources.values())
    unread = [
        variable.name
        for constant, variable in _registry_constants().items()
        if variable.name not in literal_reads
        and not re.search(rf"\b{constant}\.(get|raw|is_set)\(", everything)
    ]
    assert not unread, f"registered but never read (remove them, or read them): {unread}"


def test_docs_and_deployment_files_name_only_known_variables() -> None:
    known = known_names() | set(DEPLOYMENT_ONLY)
    unknown = {
        f"{path.relative_to(ROOT)}: {name}"
        for path in _doc_files()
        for name in FFR_NAME.findall(path.read_text(encoding="utf-8", errors="replace"))
        if name not in known
    }
    assert not unknown, "unknown variables (register them or fix the doc):\n" + "\n".join(
        sorted(unknown)
    )


def test_readme_table_is_the_registry() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme, (
        "README.md's Settings table differs from the registry: paste `python -m ffr_lib.settings`"
    )
    assert settings_table() in (settings.__doc__ or "")


def test_unset_and_empty_mean_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FFR_PG_PORT", raising=False)
    assert PG_PORT.get() == 55432
    monkeypatch.setenv("FFR_PG_PORT", "  ")
    assert PG_PORT.get() == 55432
    monkeypatch.setenv("FFR_PG_PORT", "6000")
    assert PG_PORT.get() == 6000
    monkeypatch.setenv("FFR_HOME", str(tmp_path))
    monkeypatch.delenv("FFR_PGDATA", raising=False)
    assert settings.PGDATA.get() == tmp_path.resolve() / "pgdata"  # computed at read time
    assert HOME.get() == tmp_path.resolve()


def test_a_bad_value_names_the_variable_unless_lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFR_PG_PORT", "many")
    with pytest.raises(ValueError, match="FFR_PG_PORT='many'"):
        PG_PORT.get()
    monkeypatch.setenv("FFR_PROGRESS_EVERY", "soon")
    assert PROGRESS_EVERY.get() == 15.0
    for off in ("0", "false", "No", "OFF"):
        monkeypatch.setenv("FFR_PROGRESS", off)
        assert PROGRESS.get() is False
    monkeypatch.setenv("FFR_PROGRESS", "maybe")
    assert PROGRESS.get() is True


def test_torch_threads_has_one_name_and_honours_the_old_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ffr_lib.threads import wanted_threads

    monkeypatch.delenv("FFR_TORCH_THREADS", raising=False)
    monkeypatch.delenv("FFR_ENCODER_THREADS", raising=False)
    assert TORCH_THREADS.get() is None
    monkeypatch.setenv("FFR_ENCODER_THREADS", "2")
    assert TORCH_THREADS.get() == 2 and wanted_threads(load=50.0, cores=4) == 2
    monkeypatch.setenv("FFR_TORCH_THREADS", "3")  # the current name wins
    assert TORCH_THREADS.get() == 3
    monkeypatch.setenv("FFR_TORCH_THREADS", "lots")  # ignored, as before: threads follow the load
    assert TORCH_THREADS.get() is None
