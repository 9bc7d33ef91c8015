"""`ffr db up | status | down | url | migrate`: the database, embedded or FFR_DATABASE_URL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import typer

app = typer.Typer(
    help="Manage the Postgres database (embedded server, or the one FFR_DATABASE_URL names).",
    no_args_is_help=True,
)

T = TypeVar("T")


def _console():
    from rich.console import Console

    return Console()


def _fail(message: str) -> None:
    from ffr_lib.db import redact_url

    typer.secho(redact_url(message), fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


def _guard(action: Callable[[], T]) -> T:
    """Run ``action``; turn database errors into a one-line message and exit code 1."""
    import psycopg

    from ffr_lib.db import EmbeddedError, MigrationError

    try:
        return action()
    except (EmbeddedError, MigrationError, psycopg.Error) as exc:
        _fail(f"error: {exc}".strip())
        raise  # unreachable: _fail exits


@app.command()
def up() -> None:
    """Start the embedded server if needed (reusing a running one) and apply migrations."""
    from ffr_lib.db import database_url, embedded_server, is_embedded, migrate, redact_url

    console = _console()
    if is_embedded():
        server = embedded_server()
        was_running = server.is_running()
        started = time.perf_counter()
        url = _guard(server.start)
        if was_running:
            console.print(f"embedded server already running ({server.pgdata})")
        else:
            console.print(
                f"embedded server started in {time.perf_counter() - started:.1f}s ({server.pgdata})"
            )
    else:
        url = database_url()
        console.print("using FFR_DATABASE_URL (nothing to start)")
    applied = _guard(lambda: migrate(url))
    console.print(
        f"migrations applied now: {', '.join(applied) if applied else 'none (up to date)'}"
    )
    console.print(f"url: {redact_url(url)}")


@app.command()
def down() -> None:
    """Stop the embedded server (fast shutdown; data kept). Does nothing for FFR_DATABASE_URL."""
    from ffr_lib.db import embedded_server, is_embedded

    if not is_embedded():
        typer.echo("FFR_DATABASE_URL is set: that server is not managed here, nothing stopped")
        return
    server = embedded_server()
    stopped = _guard(server.stop)
    typer.echo(f"embedded server {'stopped' if stopped else 'was not running'} ({server.pgdata})")


@app.command()
def url(
    show_password: bool = typer.Option(False, "--show-password", help="print the password too"),
) -> None:
    """Print the database URL (password redacted unless --show-password). Starts nothing."""
    from ffr_lib.db import database_url, embedded_server, is_embedded, redact_url

    if is_embedded():
        server = embedded_server()
        if not server.is_initialized():
            _fail(f"the embedded server in {server.pgdata} is not initialised: run `ffr db up`")
        value = server.url()
        if not server.is_running():
            typer.secho("note: the embedded server is not running (`ffr db up`)", err=True)
    else:
        value = database_url()
    typer.echo(value if show_password else redact_url(value))


@app.command()
def migrate() -> None:
    """Apply pending migrations from sql/migrations (starting the embedded server if needed)."""
    from ffr_lib.db import database_url
    from ffr_lib.db import migrate as run_migrations

    applied = _guard(lambda: run_migrations(_guard(database_url)))
    typer.echo(f"applied: {', '.join(applied)}" if applied else "up to date: nothing to apply")


@app.command()
def status() -> None:
    """Server and pgvector versions, database size, migrations and row counts per table.
    Exits 1 when the database cannot be reached (the embedded server is not started by this)."""
    from rich.table import Table

    from ffr_lib.db import connect, embedded_server, is_embedded, redact_url
    from ffr_lib.db.migrate import applied as applied_migrations
    from ffr_lib.db.migrate import discover
    from ffr_lib.settings import get_settings

    console = _console()
    if is_embedded():
        server = embedded_server()
        if not server.is_initialized() or not server.is_running():
            _fail(f"embedded server not running ({server.pgdata}): start it with `ffr db up`")
        target = server.url()
        mode = f"embedded ({server.pgdata})"
    else:
        target = get_settings().database_url or ""
        mode = "FFR_DATABASE_URL"

    def gather() -> tuple[dict[str, str], dict[str, int | None]]:
        with connect(target) as conn:
            server_version = conn.execute("SHOW server_version").fetchone()[0]
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            size = conn.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()[0]
            has_schema = conn.execute("SELECT to_regnamespace('ffr')").fetchone()[0] is not None
            counts: dict[str, int | None] = {}
            if has_schema:
                from ffr_lib.store import count_rows

                counts.update(count_rows(conn=conn))
        done = applied_migrations(target)
        pending = [m.name for m in discover() if m.version not in done]
        info = {
            "mode": mode,
            "url": redact_url(target),
            "server": f"PostgreSQL {server_version}",
            "pgvector": row[0] if row else "not installed (run `ffr db migrate`)",
            "database size": size,
            "migrations": f"{len(done)} applied, {len(pending)} pending"
            + (f" ({', '.join(pending)})" if pending else ""),
        }
        return info, counts

    info, counts = _guard(gather)
    summary = Table(show_header=False, box=None)
    for key, value in info.items():
        summary.add_row(f"[bold]{key}[/bold]", value)
    console.print(summary)
    if counts:
        table = Table(title="rows per table (schema ffr)")
        table.add_column("table")
        table.add_column("rows", justify="right")
        for name, count in counts.items():
            table.add_row(name, f"{count:,}")
        console.print(table)
    else:
        console.print("schema ffr does not exist yet: run `ffr db migrate`")
