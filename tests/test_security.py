"""Security (issue 8): no SQL text built from user values, in Python or in the SQL functions;
connection secrets never printed (CLI, logs, errors, engine reprs, Dagster event logs).
The role tests (ffr_reader cannot write, create or alter anything; every function pins its
search_path) are in tests/test_sql_roles.py."""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
from typer.testing import CliRunner

from ffr_lib.cli import app
from ffr_lib.db import connect, free_port, get_engine, migrate, redact_url
from ffr_lib.index import index_rows, search_by_vector
from ffr_lib.store import write_dataset

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()

# ------------------------------------------------------------------------ dynamic SQL (Python)

_SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT INTO|UPDATE|DELETE FROM|CREATE|DROP|ALTER|COPY|SET|WHERE|FROM|TRUNCATE|"
    r"GRANT|PREPARE|EXECUTE|EXPLAIN)\b"
)
_SQL_CALLS = {"execute", "executemany", "copy", "SQL", "text", "exec_driver_sql"}

# Every expression interpolated into SQL text in ffr_lib / ffr_assets, reviewed: none carries a
# user value (those are always bound parameters). A new f-string SQL fails the test below until
# it is reviewed and added here with its reason.
REVIEWED = {
    # a module constant (CLIENT_CHECK_INTERVAL_MS), forced to int
    ("ffr_lib/db/engine.py", "int(CLIENT_CHECK_INTERVAL_MS)"),
    # a literal tuple of planner settings
    ("ffr_lib/index/checks.py", "setting"),
    # a literal type list, and the query text ffr.fragment_search_sql built from the trusted
    # registry row (ffr.fem_versions); user values are EXECUTE parameters
    ("ffr_lib/index/checks.py", "types"),
    ("ffr_lib/index/checks.py", "query"),
    # a module constant column list
    ("ffr_lib/index/search.py", "_COLUMNS"),
    # module constant column lists of the staging COPY
    ("ffr_lib/index/writer.py", "columns"),
    # vector type and dimension of the registry row: CHECK (vector_type IN ('vector',
    # 'halfvec')), int(dimension)
    ("ffr_lib/index/writer.py", "vector_type"),
    ("ffr_lib/index/writer.py", "int(dimension)"),
    # staging-table names and LIKE targets are literals of this module
    ("ffr_lib/store/dialogues.py", "name"),
    ("ffr_lib/store/dialogues.py", "like"),
    ("ffr_lib/store/dialogues.py", "columns"),
    # WHERE clauses assembled from literal fragments with %s placeholders
    ("ffr_lib/store/dialogues.py", "where"),
    ("ffr_lib/store/dialogues.py", "' AND '.join(clauses)"),
    ("ffr_lib/store/dialogues.py", "'WHERE id = ANY(%s)' if ids is not None else ''"),
}


def _interpolated_sql() -> set[tuple[str, str]]:
    """(file, expression) for every expression formatted into a string that looks like SQL,
    or into any string passed straight to execute/copy/sql.SQL/text."""
    found: set[tuple[str, str]] = set()
    for folder in ("ffr_lib", "ffr_assets"):
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.JoinedStr):
                    literal = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if _SQL_WORDS.search(literal):
                        found |= {
                            (rel, ast.unparse(v.value))
                            for v in node.values
                            if isinstance(v, ast.FormattedValue)
                        }
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    first = node.args[0] if node.args else None
                    if name in _SQL_CALLS and isinstance(first, ast.JoinedStr):
                        found |= {
                            (rel, ast.unparse(v.value))
                            for v in first.values
                            if isinstance(v, ast.FormattedValue)
                        }
                    # "..." % x, "..." + x, "...".format(x): never for SQL
                    if (
                        name in _SQL_CALLS
                        and isinstance(first, ast.BinOp | ast.Call)
                        and not (isinstance(first, ast.Call) and _is_sql_composition(first))
                    ):
                        found.add((rel, f"<{ast.unparse(first)}>"))
                    if (
                        name == "format"
                        and isinstance(func, ast.Attribute)
                        and isinstance(func.value, ast.Constant)
                        and isinstance(func.value.value, str)
                        and _SQL_WORDS.search(func.value.value)
                    ):
                        found.add((rel, f"<{ast.unparse(node)}>"))
    return found


def _is_sql_composition(call: ast.Call) -> bool:
    """psycopg.sql composition (sql.SQL("...").format(sql.Identifier(...), ...)): safe quoting."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "format"
        and isinstance(func.value, ast.Call)
        and getattr(func.value.func, "attr", "") == "SQL"
    ) or (isinstance(func, ast.Name) and func.id == "hnsw_index_sql")  # returns sql.Composed


def test_no_sql_text_is_built_from_user_values() -> None:
    unreviewed = _interpolated_sql() - REVIEWED
    assert not unreviewed, (
        "SQL text built by formatting (bind user values as parameters instead; if the value is "
        f"trusted, review it and add it to REVIEWED): {sorted(unreviewed)}"
    )


# --------------------------------------------------------------------- dynamic SQL (functions)

USER_PARAMETERS = (
    "query_embedding",
    "query_text",
    "dialogue_ids",
    "speaker",
    "since",
    "until",
    "fragment_id",
    "k",
)


def _balanced(text: str, start: int) -> str:
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    raise AssertionError("unbalanced parentheses")


def test_sql_functions_bind_every_user_value() -> None:
    """Every EXECUTE in sql/ passes values with USING, and no user parameter is formatted into
    the statement text (only whether a filter is present: ``speaker IS NOT NULL``)."""
    executes = 0
    for path in sorted((REPO / "sql").rglob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text())
        for match in re.finditer(r"\bEXECUTE\b(?!\s+ON\b)", text):  # not GRANT EXECUTE ON
            statement = text[match.start() : text.index(";", match.start())]
            executes += 1
            assert "USING" in statement, f"{path.name}: EXECUTE without USING: {statement}"
            for fmt in re.finditer(r"\bformat\s*\(", statement):
                args = _balanced(statement, fmt.end() - 1)
                args = re.sub(r"'(?:[^']|'')*'", "''", args)  # drop string literals
                args = re.sub(r"\b\w+ IS (NOT )?NULL\b", "", args)
                for name in USER_PARAMETERS:
                    assert not re.search(rf"\b{name}\b", args), (
                        f"{path.name}: user parameter {name} formatted into SQL: {statement}"
                    )
        for fmt in re.finditer(r"\bformat\s*\(", text):
            args = re.sub(r"'(?:[^']|'')*'", "''", _balanced(text, fmt.end() - 1))
            args = re.sub(r"\b\w+ IS (NOT )?NULL\b", "", args)
            for name in USER_PARAMETERS:
                assert not re.search(rf"\b{name}\b", args), f"{path.name}: {name} in format()"
    assert executes >= 2  # search_fragments' index query and its exact fallback


# ----------------------------------------------------------------------------------- secrets


def test_redact_url_hides_query_parameter_passwords() -> None:
    assert redact_url("postgresql://u@h:5/db?password=s3cret&sslmode=require") == (
        "postgresql://u@h:5/db?password=***&sslmode=require"
    )
    assert "s3cret" not in redact_url("postgresql://u:s3cret@h/db?password=s3cret")


@pytest.mark.db
def test_secrets_never_reach_output_logs_errors_or_reprs(
    db_url: str, synthetic_dataset, caplog: pytest.LogCaptureFixture, monkeypatch
) -> None:
    from reliability_helpers import HashEmbedder, utterance_rows

    password = urlparse(db_url).password
    assert password and len(password) > 8
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    engine = get_engine(db_url)
    seen += [repr(engine), str(engine.url), repr(engine.url), repr(engine.pool)]
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    migrate(db_url)
    write_dataset(synthetic_dataset(3), url=db_url)
    index_rows(utterance_rows(db_url), HashEmbedder(), url=db_url)
    search_by_vector(HashEmbedder().encode(["lake"])[0], 3, url=db_url)
    for args in (["db", "status"], ["db", "url"], ["db", "migrate"], ["search", "lake"]):
        seen.append(runner.invoke(app, args).output)

    # Error paths: wrong password, unreachable server, a password given as a URL parameter.
    parsed = urlparse(db_url)
    wrong = db_url.replace(password, password[::-1])
    with pytest.raises(Exception) as caught:
        connect(wrong)
    seen.append(str(caught.value))
    dead = f"postgresql://postgres:{password}@127.0.0.1:{free_port()}/x"
    monkeypatch.setenv("FFR_DB_RETRY_SECONDS", "0.5")
    for url in (dead, f"postgresql://postgres@{parsed.hostname}:1/x?password={password}"):
        monkeypatch.setenv("FFR_DATABASE_URL", url)
        for args in (["db", "status"], ["db", "url"], ["search", "lake"]):
            result = runner.invoke(app, args)
            seen.append(result.output)
            seen.append(repr(result.exception) if result.exception else "")
        with pytest.raises(Exception) as caught:
            search_by_vector(HashEmbedder().encode(["lake"])[0], 3, url=url)
        seen.append(str(caught.value))

    seen.append(caplog.text)
    leaks = [s for s in seen if password in s]
    assert not leaks, leaks[0][:500]


def test_dagster_resources_take_the_database_url_from_the_environment() -> None:
    """The shipped definitions hold no URL in resource config (the Dagster UI shows resource
    config): DatabaseResource.url stays empty, so FFR_DATABASE_URL (or the embedded server's
    password file) is the only source of the secret."""
    from ffr_assets.definitions import defs

    database = defs.resources["database"]
    assert database.url is None
