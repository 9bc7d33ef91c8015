"""`ffr ingest` (placeholder until the readers and the store land)."""

import typer


def ingest(path: str) -> None:
    """Load dialogues from PATH into Postgres."""
    typer.secho("ingest is not built yet", err=True)
    raise typer.Exit(2)
