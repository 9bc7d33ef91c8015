"""`ffr db ...` (placeholder until the database module lands)."""

import typer

app = typer.Typer(help="Manage the Postgres database (embedded or FFR_DATABASE_URL).")
