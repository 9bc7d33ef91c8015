"""`ffr ingest PATH --format FORMAT [--limit N]`: read a dataset with one of the readers and store
it in Postgres in one transaction (idempotent: ingesting the same data twice changes nothing)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from ffr_lib.data.dataset import Dataset


def read(path: Path, fmt: str, limit: int | None) -> Dataset:
    """Read PATH with the reader registered for ``fmt`` (imported late, so `ffr --help` stays
    fast). Raises InputError for bad input and for an unknown format."""
    from ffr_lib.data.readers import read_dataset

    return read_dataset(path, fmt, limit=limit)


def ingest(
    path: Path = typer.Argument(
        ..., help="file or folder to read ('-' = built-in source for chitchat, photochat, qmsum)"
    ),
    fmt: str = typer.Option(
        ...,
        "--format",
        "-f",
        help="reader: canonical, photochat, chitchat, msswift, wechat-raw, locomo, qmsum",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="read at most N dialogues"),
) -> None:
    """Load dialogues and queries from PATH into Postgres (one transaction; on bad input nothing
    is written and the command exits 1)."""
    import time

    import psycopg
    from rich.console import Console
    from rich.table import Table

    from ffr_lib.data.errors import InputError
    from ffr_lib.db import EmbeddedError, MigrationError, database_url, migrate, redact_url
    from ffr_lib.store import count_rows, write_dataset

    console = Console()
    try:
        # Read (and validate) everything before touching the database: bad input then leaves
        # it exactly as it was, not even migrated.
        started = time.perf_counter()
        dataset = read(path, fmt, limit)
        read_s = time.perf_counter() - started
        url = database_url()
        migrate(url)
        before = count_rows(url)
        started = time.perf_counter()
        stats = write_dataset(dataset, url=url)
        write_s = time.perf_counter() - started
        after = count_rows(url)
    except InputError as exc:
        typer.secho(f"bad input: {exc}", fg=typer.colors.RED, err=True)
        typer.secho("nothing was written", err=True)
        raise typer.Exit(1) from None
    except (EmbeddedError, MigrationError, psycopg.Error, ValueError) as exc:
        typer.secho(
            f"ingest failed, nothing was written: {redact_url(str(exc))}",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1) from None

    table = Table(title=f"ffr ingest {path} --format {fmt}")
    table.add_column("table")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for name in after:
        table.add_row(name, f"{before.get(name, 0):,}", f"{after[name]:,}")
    console.print(table)
    what = f"read {len(dataset.dialogues):,} dialogues and {len(dataset.queries):,} queries"
    for note in dataset.metadata.get("warnings", [])[:20]:
        console.print(f"warning: {note}", highlight=False, markup=False)
    if dataset.metadata.get("general_queries_skipped"):
        what += f" ({dataset.metadata['general_queries_skipped']:,} general queries skipped)"
    if stats.changed:
        done = ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in stats.as_dict().items() if v)
        console.print(f"{what} in {read_s:.1f}s; wrote in {write_s:.1f}s: {done}")
    else:
        console.print(f"{what} in {read_s:.1f}s; nothing changed (already stored)")
