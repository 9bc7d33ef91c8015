"""A small migration runner: ordered files ``sql/migrations/NNNN_name.sql`` applied once each, in
one transaction each, recorded in ``ffr.schema_migrations`` with their checksum.

Why not Alembic: the schema is plain SQL (pgvector types, SQL functions, roles) that analysts
read; a numbered folder of SQL files is the simplest thing that is ordered, atomic and auditable.

Concurrency: every step runs under ``pg_advisory_xact_lock``, so two runners (say the CLI and a
Dagster run) serialise; the second sees the files already recorded and does nothing. An applied
file that was edited afterwards is an error, not silently ignored.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from ffr_lib.db.engine import connect, dispose_engines
from ffr_lib.settings import REPO_ROOT

log = logging.getLogger(__name__)

# Arbitrary constant shared by all runners: the advisory lock key of "ffr migrations".
LOCK_KEY = 0x0FF2_0001
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
MIN_SERVER_VERSION = 150000
MIN_PGVECTOR = (0, 8)


class MigrationError(RuntimeError):
    """A migration file is malformed, changed after being applied, or failed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def migrations_dir() -> Path:
    """``<repo>/sql/migrations``: the project is used from its checkout (``pip install -e .``,
    which ``make setup`` does), so the SQL lives beside the code, readable by analysts."""
    return REPO_ROOT / "sql" / "migrations"


def discover(directory: Path | None = None) -> list[Migration]:
    """All migration files in order. Files not named ``NNNN_lower_snake.sql`` are an error
    (a typo must not silently skip a migration); README/other non-.sql files are ignored."""
    directory = directory or migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations folder not found: {directory}")
    found: list[Migration] = []
    for path in sorted(directory.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files must be named NNNN_lower_snake.sql")
        found.append(Migration(int(match.group(1)), path.stem, path, path.read_text("utf-8")))
    versions = [m.version for m in found]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationError(f"{directory}: duplicate migration numbers {duplicates}")
    return found


_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS ffr;
CREATE TABLE IF NOT EXISTS ffr.schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


def applied(url: str | None = None) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the migrations recorded in the database ({} if none)."""
    with connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('ffr.schema_migrations')").fetchone()[0]
        if exists is None:
            return {}
        rows = conn.execute("SELECT version, name, checksum FROM ffr.schema_migrations").fetchall()
    return {version: (name, checksum) for version, name, checksum in rows}


def migrate(url: str | None = None, directory: Path | None = None) -> list[str]:
    """Apply every pending migration; return the names applied now (empty when up to date)."""
    migrations = discover(directory)
    done: list[str] = []
    # autocommit: each `conn.transaction()` below is then a real, separately committed
    # transaction (in non-autocommit mode they would be savepoints of one big transaction).
    with connect(url, autocommit=True) as conn:
        _check_server(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            conn.execute(_BOOTSTRAP)
        for migration in migrations:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
                row = conn.execute(
                    "SELECT name, checksum FROM ffr.schema_migrations WHERE version = %s",
                    (migration.version,),
                ).fetchone()
                if row is not None:
                    if row[1] != migration.checksum:
                        raise MigrationError(
                            f"{migration.path} changed after it was applied as {row[0]}; add a new "
                            "numbered migration instead of editing an applied one"
                        )
                    continue
                log.info("applying migration %s", migration.name)
                try:
                    conn.execute(migration.sql)
                except Exception as exc:
                    raise MigrationError(f"{migration.path} failed: {exc}") from exc
                conn.execute(
                    "INSERT INTO ffr.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
                done.append(migration.name)
        _check_pgvector(conn)
    if done:
        # Pooled connections opened before `CREATE EXTENSION vector` lack the vector adapters.
        dispose_engines()
    return done


def _check_server(conn) -> None:
    version = int(conn.execute("SHOW server_version_num").fetchone()[0])
    if version < MIN_SERVER_VERSION:
        raise MigrationError(f"PostgreSQL >= 15 required, server is {version}")
    row = conn.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is None:
        raise MigrationError("the pgvector extension (>= 0.8) is not installed on this server")
    _require_pgvector(row[0])


def _check_pgvector(conn) -> None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    if row is None:
        return
    _require_pgvector(row[0])


def _require_pgvector(version: str) -> None:
    parts = tuple(int(p) for p in re.findall(r"\d+", version)[:2])
    if parts < MIN_PGVECTOR:
        raise MigrationError(f"pgvector >= 0.8 required, database has {version}")
