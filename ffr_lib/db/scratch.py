"""Databases of their own, beside the one users serve from, on the same server: an evaluation
stores, cuts and indexes its corpus there, so nothing it writes reaches the serving database.

Throw-away by default (dropped when the block ends, also after an error); ``keep=True`` leaves it
for inspection (``FFR_DATABASE_URL=<its url> ffr search ...``) under its name.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from collections.abc import Iterator

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from ffr_lib.db.engine import connect, dispose_engines, libpq_url, redact_url
from ffr_lib.db.migrate import migrate

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class ScratchDatabaseError(RuntimeError):
    """A database of its own could not be made (the message says what to change)."""


def database_of(url: str) -> str:
    """The database name a URL connects to."""
    return make_url(libpq_url(url)).database or ""


def with_database(url: str, name: str) -> str:
    """The same server, credentials and options as ``url``, database ``name``."""
    return make_url(libpq_url(url)).set(database=name).render_as_string(hide_password=False)


def scratch_name(prefix: str = "ffr_eval") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def scratch_database(url: str, name: str | None = None, *, keep: bool = False) -> Iterator[str]:
    """Create database ``name`` (default: a fresh ``ffr_eval_<hex>``) on the server of ``url``,
    apply the migrations, yield its URL, and drop it afterwards unless ``keep``. A kept name that
    exists already is dropped and made again, so every run starts empty.

    Raises :class:`ScratchDatabaseError` when ``name`` is the database of ``url`` itself, is not
    a plain lower-case identifier, or the role may not create databases."""
    name = name or scratch_name()
    if not _NAME.match(name):
        raise ScratchDatabaseError(
            f"database name {name!r}: use lower-case letters, digits and _ (at most 63)"
        )
    if name == database_of(url):
        raise ScratchDatabaseError(
            f"{name!r} is the database of {redact_url(url)}; an evaluation never writes there"
        )
    admin = with_database(url, database_of(url) or "postgres")
    target = with_database(url, name)
    identifier = sql.Identifier(name)
    try:
        with connect(admin, autocommit=True) as db:
            db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            db.execute(sql.SQL("CREATE DATABASE {}").format(identifier))
    except psycopg.errors.InsufficientPrivilege as exc:
        raise ScratchDatabaseError(
            f"cannot create database {name!r} on {redact_url(url)} ({exc.diag.message_primary}): "
            "an evaluation indexes its corpus in a database of its own; grant the role CREATEDB"
        ) from exc
    log.info("scratch database %s created%s", name, " (kept afterwards)" if keep else "")
    try:
        migrate(target)
        yield target
    finally:
        dispose_engines()
        if not keep:
            with connect(admin, autocommit=True) as db:
                db.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(identifier))
            log.info("scratch database %s dropped", name)
