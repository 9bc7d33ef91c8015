"""The one place that yields database connections: a SQLAlchemy engine and psycopg connections,
both with the pgvector types registered, for the URL in ``FFR_DATABASE_URL`` or, when that is
unset, the embedded server (started on demand and left running for the next command)."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg.types import TypeInfo
from sqlalchemy import Engine, create_engine, event

from ffr_lib.db.embedded import EmbeddedConfig, EmbeddedServer
from ffr_lib.settings import DB_CONNECT_TIMEOUT, DB_RETRY_SECONDS, get_settings

log = logging.getLogger(__name__)

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_SCHEME = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"^([a-z0-9+]+://[^:/@]*:)([^@]*)(@)", re.IGNORECASE)
# A password given as a query parameter (?password=...) instead of in the authority part.
_PASSWORD_PARAM = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)

T = TypeVar("T")

# Seconds a client waits for the TCP connection and authentication (libpq connect_timeout):
# without it, connecting to a host that drops packets waits for the kernel's TCP timeout.
DEFAULT_CONNECT_TIMEOUT_S: int = DB_CONNECT_TIMEOUT.default
# Seconds read-only callers (search) keep retrying while the server is unreachable or
# restarting before they give up with DatabaseUnavailable.
DEFAULT_RETRY_S: float = DB_RETRY_SECONDS.default
# A backend notices within this many ms that its client died (SIGKILL, lost network) and aborts
# the statement, so a killed indexer does not keep building an index and holding its locks.
CLIENT_CHECK_INTERVAL_MS = 2000


class DatabaseUnavailable(psycopg.OperationalError):
    """The database could not be reached (down, restarting, refusing connections) within the
    retry window. The message names the URL with its password redacted."""


def connect_timeout_s() -> int:
    """``FFR_DB_CONNECT_TIMEOUT`` in seconds (default in ``ffr_lib.settings``)."""
    return DB_CONNECT_TIMEOUT.get()


def retry_window_s() -> float:
    """``FFR_DB_RETRY_SECONDS`` (0 = no retry; default in ``ffr_lib.settings``)."""
    return DB_RETRY_SECONDS.get()


def is_transient(exc: BaseException) -> bool:
    """True for errors that mean "the server is not there right now" (connection refused or
    lost, shutting down, starting up), after which a read-only statement can simply be retried.
    Class 08 (connection exception) and 57P (operator intervention: admin/crash shutdown, cannot
    connect now); a connection failure has no SQLSTATE at all."""
    if not isinstance(exc, psycopg.OperationalError) or isinstance(exc, DatabaseUnavailable):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(("08", "57P"))


def embedded_server(pgdata: str | None = None) -> EmbeddedServer:
    """The embedded server configured by FFR_PGDATA / FFR_PG_PORT (not started)."""
    from pathlib import Path

    return EmbeddedServer(EmbeddedConfig.from_env(Path(pgdata) if pgdata else None))


def database_url(*, start: bool = True) -> str:
    """The libpq URL (``postgresql://...``) in use: ``FFR_DATABASE_URL`` if set, otherwise the
    embedded server's, started first when ``start`` (the default). Contains the password: pass
    it through :func:`redact_url` before printing or logging."""
    url = get_settings().database_url
    if url:
        return libpq_url(url)
    server = embedded_server()
    return server.start() if start else server.url()


def is_embedded() -> bool:
    """True when no FFR_DATABASE_URL is set (the embedded server is used)."""
    return not get_settings().database_url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for logs and terminals)."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***\3", url))


def libpq_url(url: str) -> str:
    """``postgresql+psycopg2://`` / ``postgres://`` -> ``postgresql://`` (what psycopg and psql
    accept)."""
    if not _SCHEME.match(url):
        raise ValueError(f"not a PostgreSQL URL: {redact_url(url)}")
    return _SCHEME.sub("postgresql://", url, count=1)


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL -> ``postgresql+psycopg://`` (SQLAlchemy with psycopg 3)."""
    return _SCHEME.sub("postgresql+psycopg://", libpq_url(url), count=1)


def register_vector_types(conn: psycopg.Connection[Any]) -> bool:
    """Register pgvector's vector/halfvec/sparsevec/bit adapters on a psycopg connection.
    Returns False (and does nothing) when the extension is not installed in this database yet,
    so connections used to run the first migration still work."""
    from pgvector.psycopg import register_vector

    if TypeInfo.fetch(conn, "vector") is None:
        return False
    register_vector(conn)
    return True


def _configure(conn: psycopg.Connection[Any]) -> None:
    was_idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    register_vector_types(conn)
    # Utterance timestamps come back in UTC whatever the server's default time zone is.
    conn.execute("SET TIME ZONE 'UTC'")
    try:
        # A savepoint when a transaction is open: a server that cannot check (its platform
        # lacks the kernel support) refuses the setting, and the connection must stay usable.
        with conn.transaction():
            conn.execute(f"SET client_connection_check_interval = {int(CLIENT_CHECK_INTERVAL_MS)}")
    except psycopg.Error as exc:
        log.debug("client_connection_check_interval not available: %s", exc)
    if was_idle and not conn.autocommit:
        conn.commit()  # do not leave the caller inside our implicit transaction


def connect(
    url: str | None = None, *, autocommit: bool = False, **kwargs: Any
) -> psycopg.Connection:
    """A psycopg 3 connection with the pgvector types registered and the session time zone UTC.
    ``url`` defaults to :func:`database_url` (starting the embedded server if needed).
    Connecting gives up after ``FFR_DB_CONNECT_TIMEOUT`` seconds (default 10) unless the URL or
    ``kwargs`` set ``connect_timeout``."""
    target = libpq_url(url or database_url())
    if "connect_timeout" not in target:
        kwargs.setdefault("connect_timeout", connect_timeout_s())
    conn = psycopg.connect(target, autocommit=autocommit, **kwargs)
    try:
        _configure(conn)
    except Exception:
        conn.close()
        raise
    return conn


def get_engine(url: str | None = None) -> Engine:
    """The SQLAlchemy engine (psycopg 3 driver, pgvector registered on each new connection) for
    ``url`` or :func:`database_url`. Engines are cached per URL; :func:`dispose_engines` drops
    them (tests that drop databases must call it first)."""
    target = sqlalchemy_url(url or database_url())
    with _ENGINES_LOCK:
        engine = _ENGINES.get(target)
        if engine is None:
            connect_args = (
                {} if "connect_timeout" in target else {"connect_timeout": connect_timeout_s()}
            )
            engine = create_engine(
                target, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=connect_args
            )
            event.listen(engine, "connect", _on_connect)
            _ENGINES[target] = engine
        return engine


def _on_connect(dbapi_connection: psycopg.Connection[Any], _record: Any) -> None:
    _configure(dbapi_connection)


def dispose_engines() -> None:
    """Close every cached engine's pooled connections and forget the engines."""
    with _ENGINES_LOCK:
        for engine in _ENGINES.values():
            engine.dispose()
        _ENGINES.clear()


def with_retry(work: Callable[[], T], *, url: str | None = None, retry_s: float | None = None) -> T:
    """Run ``work`` (a read-only, repeatable database call that opens its own connection),
    retrying with backoff while the server is unreachable or restarting (:func:`is_transient`),
    for at most ``retry_s`` seconds (default ``FFR_DB_RETRY_SECONDS``, 15). Then raise
    :class:`DatabaseUnavailable` saying where and why, with the password redacted. Other errors
    propagate at once. Never use it around writes that are not idempotent."""
    window = retry_window_s() if retry_s is None else retry_s
    deadline = time.monotonic() + window
    attempt = 0
    while True:
        attempt += 1
        try:
            return work()
        except psycopg.OperationalError as exc:
            if not is_transient(exc):
                raise
            if time.monotonic() >= deadline:
                where = redact_url(url) if url else "the database"
                reason = " ".join(str(exc).split())
                raise DatabaseUnavailable(
                    f"database unavailable at {where} after {attempt} attempt(s) in "
                    f"{window:.0f} s: {reason}"
                ) from exc
            delay = min(0.1 * 2 ** (attempt - 1), 1.0, max(0.0, deadline - time.monotonic()))
            log.info("database not reachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            time.sleep(delay)
