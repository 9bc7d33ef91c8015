"""Commands whose implementation has not landed yet. Each says so clearly and exits non-zero,
so nobody mistakes a placeholder for a result. A command moves out of here when it is built."""

from __future__ import annotations

import typer

PENDING: dict[str, str] = {
    "bench": "the benchmark suite (issue 9)",
}


def _make(name: str, what: str):
    def command(ctx: typer.Context) -> None:
        typer.secho(
            f"`ffr {name}` is not built yet: {what} has not landed. Nothing was run.",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(code=2)

    command.__doc__ = f"[not built yet] {what}."
    return command


def register(app: typer.Typer) -> None:
    for name, what in PENDING.items():
        app.command(
            name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
        )(_make(name, what))
