"""ffr_lib.db against the real embedded server: connections, pgvector, migrations, lifecycle."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import text

from ffr_lib.db import (
    EmbeddedConfig,
    EmbeddedError,
    EmbeddedServer,
    MigrationError,
    connect,
    database_url,
    free_port,
    get_engine,
    libpq_url,
    migrate,
    redact_url,
    sqlalchemy_url,
)
from ffr_lib.db.migrate import applied, discover, migrations_dir

pytestmark = pytest.mark.db


# ----------------------------------------------------------------------------------- URL helpers
def test_redact_url_hides_only_the_password() -> None:
    url = "postgresql+psycopg://ffr:s3cr%40t@db.example:5432/ffr?sslmode=require"
    assert redact_url(url) == "postgresql+psycopg://ffr:***@db.example:5432/ffr?sslmode=require"
    assert redact_url("postgresql://db.example/ffr") == "postgresql://db.example/ffr"


def test_url_schemes_are_normalised_for_each_driver() -> None:
    assert libpq_url("postgresql+psycopg2://u:p@h/d") == "postgresql://u:p@h/d"
    assert libpq_url("postgres://u:p@h/d") == "postgresql://u:p@h/d"
    assert sqlalchemy_url("postgresql://u:p@h/d") == "postgresql+psycopg://u:p@h/d"
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        libpq_url("mysql://u:secret@h/d")


def test_database_url_prefers_ffr_database_url(db_url: str) -> None:
    assert database_url() == db_url


# ------------------------------------------------------------------------ connections + pgvector
def test_server_and_pgvector_versions(db_url: str) -> None:
    with connect(db_url) as conn:
        server = int(conn.execute("SHOW server_version_num").fetchone()[0])
        pgvector = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()[0]
    assert server >= 150000
    major, minor = (int(p) for p in pgvector.split(".")[:2])
    assert (major, minor) >= (0, 8)


def test_psycopg_connection_round_trips_vectors(db_url: str) -> None:
    vector = np.array([0.5, -1.25, 3.0], dtype=np.float32)
    with connect(db_url) as conn:
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        back = conn.execute("SELECT %s::vector", (vector,)).fetchone()[0]
        distance = conn.execute(
            "SELECT %s::vector <=> %s::vector", (vector, vector * 2)
        ).fetchone()[0]
        timezone = conn.execute("SHOW TimeZone").fetchone()[0]
    np.testing.assert_array_equal(back.to_numpy(), vector)
    assert distance == pytest.approx(0.0, abs=1e-6)
    assert timezone == "UTC"


def test_sqlalchemy_engine_registers_vectors_and_is_cached(db_url: str) -> None:
    engine = get_engine(db_url)
    assert get_engine(db_url) is engine
    assert engine.url.drivername == "postgresql+psycopg"
    with engine.connect() as conn:
        value = conn.execute(text("SELECT '[1,2,3]'::vector")).scalar_one()
        conn.exec_driver_sql("SELECT %s::vector", (np.array([1.0, 2.0]),))
    np.testing.assert_array_equal(value.to_numpy(), [1, 2, 3])


def test_connect_works_before_the_extension_exists(blank_db_url: str) -> None:
    with connect(blank_db_url) as conn:
        assert conn.execute("SELECT to_regtype('vector')").fetchone()[0] is None


# ------------------------------------------------------------------------------------ migrations
def test_migrations_are_applied_once_and_recorded(blank_db_url: str) -> None:
    names = [m.name for m in discover()]
    assert names[0] == "0001_core_schema"
    assert migrate(blank_db_url) == names
    recorded = applied(blank_db_url)
    assert sorted(recorded) == [m.version for m in discover()]
    assert recorded[1] == ("0001_core_schema", discover()[0].checksum)
    assert migrate(blank_db_url) == []  # re-run: no-op
    with connect(blank_db_url) as conn:
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ffr'"
            )
        }
        count = conn.execute("SELECT count(*) FROM ffr.schema_migrations").fetchone()[0]
    assert {"dialogues", "utterances", "images", "queries", "fragments"} <= tables
    assert count == len(names)


def test_schema_constraints(db_url: str) -> None:
    with connect(db_url) as conn:
        conn.execute("INSERT INTO ffr.dialogues (id, source, content_hash) VALUES ('d', 's', 'h')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO ffr.queries (id, text, type) VALUES ('q', 'x', 'not-a-type')")
        conn.rollback()
        conn.execute("INSERT INTO ffr.dialogues (id, source, content_hash) VALUES ('d', 's', 'h')")
        conn.execute(
            "INSERT INTO ffr.fragments (id, dialogue_id, text, content_hash, embedding_model, "
            "embedding) VALUES ('f1', 'd', 't', 'c', 'm1', '[1,2,3]'), "
            "('f2', 'd', 't', 'c', 'm2', '[1,2,3,4]')"  # dimension-free: two FEMs side by side
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO ffr.fragments (id, dialogue_id, text, content_hash, embedding_model)"
                " VALUES ('f3', 'd', 't', 'c', 'm1')"
            )


def _copy_migrations(target: Path) -> Path:
    target.mkdir()
    for migration in discover():
        shutil.copy(migration.path, target / migration.path.name)
    return target


def test_runner_picks_up_new_numbered_files(blank_db_url: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path / "migrations")
    migrate(blank_db_url, folder)
    (folder / "9001_extra_table.sql").write_text("CREATE TABLE ffr.extra (id int PRIMARY KEY);")
    (folder / "README.md").write_text("not a migration")
    assert migrate(blank_db_url, folder) == ["9001_extra_table"]
    assert migrate(blank_db_url, folder) == []
    with connect(blank_db_url) as conn:
        assert conn.execute("SELECT to_regclass('ffr.extra')").fetchone()[0] is not None


def test_failed_migration_rolls_back_and_is_not_recorded(blank_db_url: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path / "migrations")
    (folder / "9001_broken.sql").write_text(
        "CREATE TABLE ffr.half_done (id int);\nSELECT * FROM ffr.no_such_table;"
    )
    with pytest.raises(MigrationError, match="9001_broken"):
        migrate(blank_db_url, folder)
    with connect(blank_db_url) as conn:
        assert conn.execute("SELECT to_regclass('ffr.half_done')").fetchone()[0] is None
    assert 9001 not in applied(blank_db_url)
    assert 1 in applied(blank_db_url)  # earlier files committed in their own transactions


def test_edited_applied_migration_is_refused(db_url: str, tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path / "migrations")
    first = sorted(folder.iterdir())[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate(db_url, folder)


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    folder = _copy_migrations(tmp_path / "migrations")
    (folder / "2_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lower_snake"):
        discover(folder)


def test_concurrent_runners_apply_each_migration_once(blank_db_url: str) -> None:
    from reliability_helpers import run_at_once

    results, errors = run_at_once(lambda: migrate(blank_db_url), copies=3)
    assert errors == []
    names = [m.name for m in discover()]
    # Runners may share the work (one applies some, another the rest after the lock), but each
    # migration is applied exactly once.
    applied_now = [name for result in results for name in result]
    assert sorted(applied_now) == sorted(names)
    with connect(blank_db_url) as conn:
        assert conn.execute("SELECT count(*) FROM ffr.schema_migrations").fetchone()[0] == len(
            names
        )


def test_migrations_folder_is_found_from_the_checkout() -> None:
    assert migrations_dir().is_dir()
    assert (migrations_dir() / "0001_core_schema.sql").is_file()


# ----------------------------------------------------------------------------- embedded server
def test_embedded_server_lifecycle_reuse_and_crash_recovery(pgdata_dir: Path) -> None:
    server = EmbeddedServer(EmbeddedConfig(pgdata=pgdata_dir, port=free_port()))
    assert not server.is_running()
    started = time.perf_counter()
    url = server.start()
    cold = time.perf_counter() - started
    try:
        assert server.is_running()
        assert (server.pgdata / "ffr_password").stat().st_mode & 0o077 == 0
        with connect(url) as conn:
            pid = conn.execute("SELECT pg_backend_pid()").fetchone()
            assert conn.execute("SELECT current_database()").fetchone()[0] == "ffr"
        assert pid
        postmaster = int((server.pgdata / "postmaster.pid").read_text().split()[0])
        # A second handle (another process in real life) reuses the running server.
        again = EmbeddedServer(EmbeddedConfig(pgdata=pgdata_dir, port=free_port()))
        assert again.start() == url
        assert int((server.pgdata / "postmaster.pid").read_text().split()[0]) == postmaster
        # Password authentication is enforced on TCP.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url.replace(server.password(), "wrong-password"))
        # A crash leaves a stale postmaster.pid: it must not count as running, and start recovers.
        os.kill(postmaster, signal.SIGKILL)
        deadline = time.time() + 10
        while server.is_running() and time.time() < deadline:
            time.sleep(0.1)
        assert not server.is_running()
        url2 = server.start()
        with connect(url2) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        assert server.stop() is True
    assert not server.is_running()
    assert server.stop() is False
    print(f"embedded cold start (initdb + start): {cold:.2f}s")


def test_embedded_server_refuses_a_taken_port(pgdata_dir: Path, pg_server: EmbeddedServer) -> None:
    taken = int(pg_server.url().rsplit(":", 1)[1].split("/")[0])
    server = EmbeddedServer(EmbeddedConfig(pgdata=pgdata_dir, port=taken))
    with pytest.raises(EmbeddedError, match="FFR_PG_PORT"):
        server.start()


def test_embedded_server_refuses_a_foreign_folder(tmp_path: Path) -> None:
    folder = tmp_path / "pgdata"
    folder.mkdir()
    (folder / "something.txt").write_text("not a cluster")
    server = EmbeddedServer(EmbeddedConfig(pgdata=folder, port=free_port()))
    with pytest.raises(EmbeddedError, match="not empty"):
        server.start()
