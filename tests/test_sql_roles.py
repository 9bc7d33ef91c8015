"""ffr_reader: can read and call the search functions; cannot write or change the schema. Also
that every serving function pins its search_path."""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from urllib.parse import urlparse

import numpy as np
import psycopg
import pytest

from ffr_lib.db import connect
from ffr_lib.fem.fragment_text import fragment_rows
from ffr_lib.index import index_rows
from ffr_lib.segment import FixedWindowSegmenter
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db


class Emb:
    dimension, model_version = 16, "hash16@roles"

    def encode(self, texts, batch_size: int = 64, normalize: bool = True, **_kw) -> np.ndarray:
        out = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(16) for t in texts]
        ).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.fixture
def reader_db(db_url: str, synthetic_dataset) -> str:
    dataset = synthetic_dataset(6)
    write_dataset(dataset, url=db_url)
    rows = [
        r for d in dataset.dialogues for r in fragment_rows(d, FixedWindowSegmenter().segment(d))
    ]
    index_rows(rows, Emb(), url=db_url)
    return db_url


def _as_reader(url: str) -> psycopg.Connection:
    conn = connect(url, autocommit=True)
    conn.execute("SET ROLE ffr_reader")
    assert conn.execute("SELECT current_user").fetchone()[0] == "ffr_reader"
    return conn


def test_reader_can_read_and_search(reader_db: str) -> None:
    vector = Emb().encode(["lake"])[0]
    with _as_reader(reader_db) as conn:
        assert conn.execute("SELECT count(*) FROM ffr.fragments").fetchone()[0] > 0
        assert conn.execute("SELECT count(*) FROM ffr.utterances").fetchone()[0] == 6 * 14
        hits = conn.execute("SELECT * FROM ffr.search_fragments(%s, 3)", (vector,)).fetchall()
        assert len(hits) == 3
        fid = hits[0][0]
        assert (
            len(conn.execute("SELECT * FROM ffr.similar_fragments(%s, 2)", (fid,)).fetchall()) == 2
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM ffr.hybrid_search(%s, 'lake', 3)", (vector,)
            ).fetchone()[0]
            >= 1
        )
        filtered = conn.execute(
            "SELECT * FROM ffr.search_fragments(%s, 3, ARRAY['syn-00001'], 'bob')", (vector,)
        ).fetchall()
        # window 8 over 14 utterances: the dialogue has 2 fragments, both with bob
        assert len(filtered) == 2 and {r[1] for r in filtered} == {"syn-00001"}


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO ffr.fragments (id, dialogue_id, text, content_hash, embedding_model) "
        "VALUES ('x', 'syn-00000', 't', 'h', 'm')",
        "UPDATE ffr.fragments SET text = 'hacked'",
        "DELETE FROM ffr.fragments",
        "DELETE FROM ffr.dialogues",
        "TRUNCATE ffr.fragments",
        "UPDATE ffr.serving SET embedding_model = 'other'",
        "INSERT INTO ffr.fem_versions (embedding_model, dimension, index_name) VALUES ('a', 3, 'i')",
        "CREATE TABLE ffr.evil (x int)",
        "CREATE TABLE public.evil (x int)",
        "CREATE INDEX evil ON ffr.fragments (text)",
        "ALTER TABLE ffr.fragments ADD COLUMN evil int",
        "DROP TABLE ffr.fragments",
        "CREATE OR REPLACE FUNCTION ffr.serving_model() RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$",
        "DROP FUNCTION ffr.search_fragments(vector, integer, text[], text, timestamptz, timestamptz)",
        "SELECT * FROM ffr.schema_migrations",
    ],
)
def test_reader_cannot_write_or_change_schema(reader_db: str, statement: str) -> None:
    with _as_reader(reader_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    with connect(reader_db) as admin:  # and nothing changed
        assert (
            admin.execute("SELECT count(*) FROM ffr.fragments WHERE text = 'hacked'").fetchone()[0]
            == 0
        )
        assert admin.execute("SELECT ffr.serving_model()").fetchone()[0] == "hash16@roles"


def test_reader_is_not_a_login_role(reader_db: str) -> None:
    with connect(reader_db) as admin:
        login, superuser = admin.execute(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'ffr_reader'"
        ).fetchone()
    assert (login, superuser) == (False, False)


def test_serving_functions_pin_search_path(reader_db: str) -> None:
    with connect(reader_db) as admin:
        rows = admin.execute(
            "SELECT p.proname, p.proconfig, p.prosecdef FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'ffr'"
        ).fetchall()
    names = {name for name, _config, _secdef in rows}
    assert {
        "search_fragments",
        "hybrid_search",
        "similar_fragments",
        "fragment_search_sql",
    } <= names
    for name, config, secdef in rows:
        paths = [c for c in config or [] if c.startswith("search_path=")]
        assert paths, name
        # pg_temp named last: a temp table or function cannot shadow the real ones.
        assert paths[0].replace(" ", "").endswith(",pg_temp"), (name, paths[0])
        assert not secdef, f"{name} must run with the caller's rights"
    search_config = next(c for n, c, _s in rows if n == "search_fragments")
    assert "hnsw.iterative_scan=relaxed_order" in search_config


@pytest.fixture
def analyst_url(reader_db: str) -> Iterator[str]:
    """A real LOGIN role that is a member of ffr_reader, as docs/sql.md tells people to make."""
    name, password = f"analyst_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with connect(reader_db, autocommit=True) as admin:
        admin.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE ffr_reader")
    url = urlparse(reader_db)
    yield url._replace(netloc=f"{name}:{password}@{url.hostname}:{url.port}").geturl()
    with connect(reader_db, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (name,)
        )
        admin.execute(f"DROP ROLE {name}")


ANALYST_FORBIDDEN = [
    "INSERT INTO ffr.dialogues (id, source, content_hash) VALUES ('x', 's', 'h')",
    "UPDATE ffr.fragments SET text = 'hacked'",
    "DELETE FROM ffr.utterances",
    "TRUNCATE ffr.images",
    "COPY ffr.fragments (id) FROM STDIN",
    "CREATE SCHEMA evil",
    "CREATE TABLE ffr.evil (x int)",
    "CREATE TABLE public.evil (x int)",
    "CREATE FUNCTION public.evil() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$",
    "CREATE VIEW ffr.evil AS SELECT 1",
    "CREATE EXTENSION IF NOT EXISTS hstore",
    "CREATE ROLE evil",
    "ALTER ROLE CURRENT_USER SUPERUSER",
    "ALTER TABLE ffr.fragments DISABLE TRIGGER ALL",
    "ALTER FUNCTION ffr.serving_model() SECURITY DEFINER",
    "ALTER SCHEMA ffr RENAME TO evil",
    "ALTER SYSTEM SET fsync = off",
    "COMMENT ON TABLE ffr.fragments IS 'evil'",
    "LOCK TABLE ffr.fragments IN ACCESS EXCLUSIVE MODE",
    "REINDEX TABLE ffr.fragments",
    "DROP INDEX ffr.fragments_tsv_idx",
    "SET ROLE postgres",
    "SELECT pg_read_file('/etc/passwd')",
    "COPY (SELECT 1) TO '/tmp/ffr-evil'",
    "SELECT lo_import('/etc/passwd')",
    "SELECT * FROM ffr.schema_migrations",
    "SELECT * FROM ffr.queries",
    "DO $$ BEGIN EXECUTE 'DELETE FROM ffr.fragments'; END $$",
]


def test_login_role_in_ffr_reader_cannot_write_create_or_alter(
    reader_db: str, analyst_url: str
) -> None:
    with connect(reader_db) as admin:
        before = admin.execute(
            "SELECT count(*), md5(string_agg(id || text, ',' ORDER BY id)) FROM ffr.fragments"
        ).fetchone()
    vector = Emb().encode(["lake"])[0]
    with connect(analyst_url, autocommit=True) as conn:
        role = (
            "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
        )
        assert conn.execute(role).fetchone() == (False, False, False)
        assert len(conn.execute("SELECT * FROM ffr.search_fragments(%s, 3)", (vector,)).fetchall())
        assert len(conn.execute("SELECT * FROM ffr.hybrid_search(NULL, 'lake', 3)").fetchall())
    failures = []
    for statement in ANALYST_FORBIDDEN:
        with connect(analyst_url, autocommit=True) as conn:
            try:
                if statement.startswith("LOCK"):  # only inside a transaction block
                    with conn.transaction():
                        conn.execute(statement)
                else:
                    conn.execute(statement)
                failures.append(statement)
            except psycopg.errors.InsufficientPrivilege:
                pass
    assert not failures, f"allowed for a reader: {failures}"
    with connect(reader_db) as admin:
        after = admin.execute(
            "SELECT count(*), md5(string_agg(id || text, ',' ORDER BY id)) FROM ffr.fragments"
        ).fetchone()
        assert admin.execute("SELECT to_regclass('ffr.fragments_tsv_idx')").fetchone()[0]
        assert admin.execute("SELECT to_regnamespace('evil')").fetchone()[0] is None
    assert after == before
