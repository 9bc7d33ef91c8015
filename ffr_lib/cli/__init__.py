"""The `ffr` command line. Each command group lives in its own module of this package and
imports heavy libraries (torch, transformers) inside its commands, so `ffr --help` stays fast."""

from __future__ import annotations

import typer

from ffr_lib.cli import bench, db, demo, evaluate, ingest, models, retrieve, search, ui

app = typer.Typer(
    name="ffr",
    help="FFR: find the exact fragment of a long multi-modal chat that answers a question.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(db.app, name="db")
app.add_typer(models.app, name="models")
app.command("ingest")(ingest.ingest)
app.command("retrieve")(retrieve.retrieve)
app.command("ui")(ui.ui)
app.command("search")(search.search)
app.command("eval")(evaluate.eval_command)
app.command("query")(evaluate.query_command)
app.command("bench")(bench.bench)
app.command("demo", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
    demo.demo
)


def main() -> None:  # pragma: no cover - console entry
    app()
