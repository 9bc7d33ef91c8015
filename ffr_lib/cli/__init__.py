"""The `ffr` command line. Each command group lives in its own module of this package and
imports heavy libraries (torch, transformers) inside its commands, so `ffr --help` stays fast."""

from __future__ import annotations

import typer

from ffr_lib.cli import bench, db, demo, evaluate, ingest, models, retrieve, search, ui
from ffr_lib.quiet import quiet_libraries

app = typer.Typer(
    name="ffr",
    help="FFR: find the exact fragment of a long multi-modal chat that answers a question.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Show library output too: transformers' weight-loading bars, FutureWarnings and "
        "the debug lines of bm25s and others (off: only FFR's own progress and results).",
    ),
) -> None:
    quiet_libraries(verbose)


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
