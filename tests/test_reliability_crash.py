"""Crashes and concurrency (issue 8), on real embedded Postgres servers:

- the indexing process SIGKILLed in the middle of a large batch (during the COPY transaction,
  and during the HNSW build), then run again: the index equals a clean run's, fragment by
  fragment (content hash and vector), with no duplicate and no gap;
- two runs of the same batch at once give what one run gives (and two HNSW builds of one
  version at once do not collide);
- Postgres restarted under running search clients: they retry and succeed, or fail with a clear
  DatabaseUnavailable that names the URL without its password; nothing hangs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from conftest import FAST_OPTIONS, TEMPLATE_DB
from reliability_helpers import (
    MODEL,
    HashEmbedder,
    index_content,
    run_at_once,
    utterance_rows,
)

from ffr_lib.db import (
    DatabaseUnavailable,
    EmbeddedConfig,
    EmbeddedServer,
    connect,
    dispose_engines,
    free_port,
    migrate,
)
from ffr_lib.index import check_coverage, check_no_duplicates, index_rows, search
from ffr_lib.index.writer import ensure_hnsw, get_version, index_name
from ffr_lib.store import write_dataset

pytestmark = pytest.mark.db
HELPER = Path(__file__).with_name("reliability_helpers.py")
REPO = HELPER.parent.parent


@pytest.fixture
def clean_db_url(pg_server: EmbeddedServer) -> Iterator[str]:
    """A second fresh migrated database: the reference for "equals a clean run"."""
    name = f"clean_{uuid.uuid4().hex[:12]}"
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    yield pg_server.url(name)
    dispose_engines()
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _backend(url: str, app: str) -> tuple[str, str | None] | None:
    """The running statement and what it waits for of the backend of ``app``; None without one."""
    with connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT query, wait_event_type FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database()",
            (app,),
        ).fetchone()
    return (row[0], row[1]) if row else None


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _assert_same_as_clean(url: str, clean_url: str) -> None:
    got, want = index_content(url), index_content(clean_url)
    assert len(got) == len(want) > 0
    assert got == want  # same fragment ids, content hashes and vectors
    assert check_no_duplicates(embedding_model=MODEL, url=url)[0]
    assert check_coverage(embedding_model=MODEL, url=url)[0]
    version = get_version(MODEL, url=url)
    assert version is not None and version["status"] == "ready"
    with connect(url) as db:
        valid = db.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s",
            (index_name(MODEL),),
        ).fetchall()
    assert valid == [(True,)]


def _waiting_on_lock(url: str, app: str, statement: str) -> bool:
    """The indexer's backend runs ``statement`` and waits for a lock (one the test holds)."""
    backend = _backend(url, app)
    return backend is not None and backend[0].startswith(statement) and backend[1] == "Lock"


# Where the kill lands, made certain by a lock the test holds (never a guess in time):
# - copy: the test has inserted, uncommitted, the same fragment as row 2,000 of the batch, so the
#   indexer's write transaction stores batches 1-6 and then waits at batch 7's INSERT (ON CONFLICT
#   waits for the test's transaction to decide);
# - hnsw: the test holds ROW EXCLUSIVE on ffr.fragments, which lets the rows be written and
#   committed but makes CREATE INDEX (SHARE) wait inside the index-build transaction.
COPY_BATCH_ROWS, BLOCKED_ROW = 300, 2_000


@pytest.mark.slow
@pytest.mark.parametrize(
    ("phase", "statement"), [("copy", "INSERT INTO ffr.fragments"), ("hnsw", "CREATE INDEX")]
)
def test_sigkill_mid_batch_then_rerun_equals_a_clean_run(
    db_url: str, clean_db_url: str, synthetic_dataset, phase: str, statement: str
) -> None:
    dataset = synthetic_dataset(300, 14)  # 4,200 fragments (one per utterance)
    for url in (db_url, clean_db_url):
        write_dataset(dataset, url=url)
    index_rows(utterance_rows(clean_db_url), HashEmbedder(), url=clean_db_url)

    holder = connect(db_url)  # the test's open transaction: the lock the indexer waits on
    if phase == "copy":
        row = utterance_rows(db_url)[BLOCKED_ROW]
        holder.execute(
            "INSERT INTO ffr.fragments (id, dialogue_id, text, content_hash, embedding_model) "
            "VALUES (%s, %s, %s, %s, %s)",
            (row.id, row.dialogue_id, row.text, row.content_hash, MODEL),
        )
    else:
        holder.execute("LOCK TABLE ffr.fragments IN ROW EXCLUSIVE MODE")

    app = f"ffr-kill-{phase}"
    env = {**os.environ, "PGAPPNAME": app, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(HELPER), "index", db_url, str(COPY_BATCH_ROWS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def at_pause_point() -> bool:
            assert proc.poll() is None, f"indexer finished before the kill: {proc.stdout.read()}"
            return _waiting_on_lock(db_url, app, statement)

        _wait(at_pause_point, 120, f"the indexer to wait at {statement}")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
        # The server notices the dead client while it waits (client_connection_check_interval)
        # and rolls its transaction back; only then does the test let go of its lock.
        killed = time.monotonic()
        _wait(lambda: _backend(db_url, app) is None, 60, "the killed indexer's backend to end")
        print(f"{phase}: backend gone {time.monotonic() - killed:.2f} s after SIGKILL")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.rollback()
        holder.close()
    with connect(db_url) as db:
        stored = db.execute(
            "SELECT count(*) FROM ffr.fragments WHERE embedding_model = %s", (MODEL,)
        ).fetchone()[0]
        has_index = db.execute("SELECT to_regclass(%s)", (f"ffr.{index_name(MODEL)}",)).fetchone()
    if phase == "copy":
        assert stored == 0  # the batch is one transaction: nothing half-written
    else:
        assert stored == 4_200 and has_index == (None,)  # rows committed, build rolled back

    print(f"{phase}: after the kill {stored} rows stored, HNSW index {has_index[0]}")
    stats = index_rows(utterance_rows(db_url), HashEmbedder(), url=db_url)  # the rerun
    print(f"{phase}: rerun {stats.as_dict()}")
    assert stats.index_built
    assert stats.inserted == (4_200 if phase == "copy" else 0)
    _assert_same_as_clean(db_url, clean_db_url)


def test_two_hnsw_builds_of_one_version_at_once(db_url: str, synthetic_dataset) -> None:
    """Before the per-version lock, the second CREATE INDEX IF NOT EXISTS failed with a
    unique violation on pg_class (it cannot see the first build until it commits)."""
    write_dataset(synthetic_dataset(150), url=db_url)
    index_rows(utterance_rows(db_url), HashEmbedder(), url=db_url)
    with connect(db_url) as db:
        db.execute(f"DROP INDEX ffr.{index_name(MODEL)}")
        db.commit()
    start = threading.Barrier(2)

    def build() -> bool:
        start.wait()
        return ensure_hnsw(MODEL, url=db_url)

    results, errors = run_at_once(build, timeout=60)
    assert errors == []
    assert sorted(results) == [False, True]


class _BarrierEmbedder(HashEmbedder):
    """Both runs embed at the same moment, so both find nothing stored yet and race for the
    write, the HNSW build and the activation."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier

    def encode(self, texts, **kw):
        self.barrier.wait(30)
        return super().encode(texts, **kw)


def test_two_reindex_runs_of_one_batch_at_once_equal_one_run(
    db_url: str, clean_db_url: str, synthetic_dataset
) -> None:
    dataset = synthetic_dataset(200, 14)
    for url in (db_url, clean_db_url):
        write_dataset(dataset, url=url)
    index_rows(utterance_rows(clean_db_url), HashEmbedder(), url=clean_db_url)
    rows = utterance_rows(db_url)
    barrier = threading.Barrier(2)
    stats, errors = run_at_once(
        lambda: index_rows(rows, _BarrierEmbedder(barrier), url=db_url), timeout=120
    )
    assert errors == []
    assert sorted(s.inserted for s in stats) == [0, len(rows)]
    assert sum(s.index_built for s in stats) == 1
    _assert_same_as_clean(db_url, clean_db_url)


@pytest.fixture
def own_server(pgdata_dir: Path) -> Iterator[EmbeddedServer]:
    """A server of this test's own, free to be stopped and started."""
    server = EmbeddedServer(
        EmbeddedConfig(pgdata=pgdata_dir, port=free_port(), server_options=FAST_OPTIONS)
    )
    server.start()
    yield server
    dispose_engines()
    server.stop(mode="immediate")


def test_search_clients_survive_a_postgres_restart(
    own_server: EmbeddedServer, synthetic_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = own_server.url()
    password = own_server.password()
    migrate(url)
    write_dataset(synthetic_dataset(20), url=url)
    index_rows(utterance_rows(url), HashEmbedder(), url=url)
    embedder = HashEmbedder()
    stop_at = time.monotonic() + 600
    calls: list[tuple[float, float, str]] = []  # (start, seconds, outcome)
    lock = threading.Lock()

    def client() -> None:
        while time.monotonic() < stop_at:
            began = time.monotonic()
            try:
                hits = search("lake hike", 5, encoder=embedder, url=url)
                outcome = "ok" if len(hits) == 5 else f"short {len(hits)}"
            except DatabaseUnavailable as exc:
                outcome = f"unavailable: {exc}"
            except Exception as exc:  # noqa: BLE001 - any other error fails the test below
                outcome = f"error {type(exc).__name__}: {exc}"
            with lock:
                calls.append((began, time.monotonic() - began, outcome))
            time.sleep(0.01)

    # Phase 1: a restart shorter than the retry window: every call succeeds.
    threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    stopped = time.monotonic()
    assert own_server.stop(mode="fast")
    time.sleep(1.5)
    own_server.start()
    restarted = time.monotonic()
    time.sleep(1.5)
    stop_at = time.monotonic()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a search client hangs"
    outcomes = {o for _b, _s, o in calls}
    assert outcomes == {"ok"}, outcomes
    assert any(b < stopped for b, _s, _o in calls) and any(b > restarted for b, _s, _o in calls)
    spanning = [s for b, s, _o in calls if stopped - 1 < b < restarted]
    assert spanning and max(spanning) < 15  # they waited for the server, then answered

    # Phase 2: down for longer than the retry window: a clear error, in bounded time.
    monkeypatch.setenv("FFR_DB_RETRY_SECONDS", "1")
    own_server.stop(mode="fast")
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailable) as caught:
        search("lake", 5, encoder=embedder, url=url)
    assert time.monotonic() - began < 10
    message = str(caught.value)
    assert "database unavailable at postgresql://postgres:***@127.0.0.1" in message
    assert password not in message
    assert isinstance(caught.value, psycopg.OperationalError)  # callers catching psycopg errors
    own_server.start()
    assert len(search("lake", 5, encoder=embedder, url=url)) == 5


def test_every_connection_checks_for_a_dead_client(db_url: str) -> None:
    """What lets the server stop a killed indexer's statement (and free its locks) early."""
    from sqlalchemy import text

    from ffr_lib.db import get_engine

    with connect(db_url) as db:
        # connect() leaves no transaction open behind its session settings
        assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert db.execute("SHOW client_connection_check_interval").fetchone()[0] == "2s"
    with get_engine(db_url).connect() as conn:
        assert conn.execute(text("SHOW client_connection_check_interval")).scalar() == "2s"
