"""`ffr models ...`: list the offline model aliases and prepare (convert/build) their weights."""

from __future__ import annotations

import time

import typer

app = typer.Typer(help="Model weights: offline aliases, conversions and tiny test models.")


@app.command("list")
def list_models() -> None:
    """Show every alias, its kind, where its weights are and whether they are ready."""
    from rich.console import Console
    from rich.table import Table

    from ffr_lib.models.resolve import ALIASES, alias_status

    table = Table()
    for column in ("alias", "kind", "source", "ready", "path", "hub id"):
        table.add_column(column, overflow="fold")  # fold, not cut: paths must stay copyable
    for alias in ALIASES:
        row = alias_status(alias)
        ready = "yes" if row["ready"] else ("missing" if row.get("error") else "not yet")
        table.add_row(
            alias,
            row["kind"],
            row["source"],
            ready,
            row.get("path") or row.get("error", ""),
            row["hub_id"] or "",
        )
    Console().print(table)
    typer.echo(
        "Any local folder or (with network) hub id also works. `ffr models prepare` builds the rest."
    )


@app.command("prepare")
def prepare(
    names: list[str] = typer.Argument(
        None, help="aliases or model folders (a FEM checkpoint) to prepare (default: all aliases)"
    ),
    onnx: bool = typer.Option(
        True,
        help="also export each text encoder for ONNX Runtime (FFR_ENCODER_RUNTIME=onnx), once "
        "per weights digest, so no indexing or serving process exports on first use",
    ),
) -> None:
    """Convert / build the offline weights now (each once; later runs only check)."""
    from ffr_lib.models.encoder import prepare_onnx
    from ffr_lib.models.onnx_runtime import OnnxModelError
    from ffr_lib.models.resolve import ALIASES, ModelNotAvailableError, alias_status, resolve_model

    failed = False
    for name in names or list(ALIASES):
        key = name.lower()
        already = key in ALIASES and alias_status(key)["ready"]
        typer.echo(f"{name}: {'ready' if already else 'preparing...'}")
        started = time.perf_counter()
        try:
            resolved = resolve_model(name)
        except ModelNotAvailableError as err:
            typer.secho(f"{name}: FAILED: {err}", fg=typer.colors.RED, err=True)
            failed = True
            continue
        if not already:
            typer.echo(f"{name}: done in {time.perf_counter() - started:.1f} s -> {resolved.path}")
        if onnx and resolved.kind == "text-encoder":
            started = time.perf_counter()
            try:
                found = prepare_onnx(name)
            except OnnxModelError as err:
                typer.secho(f"{name}: ONNX export FAILED: {err}", fg=typer.colors.RED, err=True)
                failed = True
                continue
            if found["runtime"] == "onnx":
                typer.echo(
                    f"{name}: ONNX export ready ({found.get('graph')} graph, probe cosine to "
                    f"torch {found.get('probe_cosine_min')}, {time.perf_counter() - started:.1f} s)"
                    f" -> {found['path']}"
                )
            else:
                typer.echo(f"{name}: no ONNX export, runs on torch: {found['reason']}")
    if failed:
        raise typer.Exit(1)
