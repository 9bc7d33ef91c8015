"""The one place that yields database connections: a SQLAlchemy engine and psycopg connections,
both with the pgvector types registered, for the URL in ``FFR_DATABASE_URL`` or, when that is
unset, the embedded server (started on demand and left running for the next command)."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import psycopg
from psycopg.types import TypeInfo
from sqlalchemy import Engine, create_engine, event

from ffr_lib.db.embedded import EmbeddedConfig, EmbeddedServer

log = logging.getLogger(__name__)

_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()
_SCHEME = re.compile(r"^(postgres|postgresql)(\+[a-z0-9_]+)?://", re.IGNORECASE)
_PASSWORD = re.compile(r"^([a-z0-9+]+://[^:/@]*:)([^@]*)(@)", re.IGNORECASE)


def embedded_server(pgdata: str | None = None) -> EmbeddedServer:
    """The embedded server configured by FFR_PGDATA / FFR_PG_PORT (not started)."""
    from pathlib import Path

    return EmbeddedServer(EmbeddedConfig.from_env(Path(pgdata) if pgdata else None))


def database_url(*, start: bool = True) -> str:
    """The libpq URL (``postgresql://...``) in use: ``FFR_DATABASE_URL`` if set, otherwise the
    embedded server's, started first when ``start`` (the default). Contains the password: pass
    it through :func:`redact_url` before printing or logging."""
    from ffr_lib.settings import get_settings

    url = get_settings().database_url
    if url:
        return libpq_url(url)
    server = embedded_server()
    return server.start() if start else server.url()


def is_embedded() -> bool:
    """True when no FFR_DATABASE_URL is set (the embedded server is used)."""
    from ffr_lib.settings import get_settings

    return not get_settings().database_url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (safe for logs and terminals)."""
    return _PASSWORD.sub(r"\1***\3", url)


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
    if was_idle and not conn.autocommit:
        conn.commit()  # do not leave the caller inside our implicit transaction


def connect(
    url: str | None = None, *, autocommit: bool = False, **kwargs: Any
) -> psycopg.Connection:
    """A psycopg 3 connection with the pgvector types registered and the session time zone UTC.
    ``url`` defaults to :func:`database_url` (starting the embedded server if needed)."""
    conn = psycopg.connect(libpq_url(url or database_url()), autocommit=autocommit, **kwargs)
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
            engine = create_engine(target, pool_pre_ping=True, pool_size=5, max_overflow=5)
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
