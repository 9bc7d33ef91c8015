"""`ffr demo`: run the end-to-end demo. The asset graph lives in ffr_assets (Dagster), which
ffr_lib must not import, so the demo runs as its own process."""

from __future__ import annotations

import subprocess
import sys

import typer


def demo(ctx: typer.Context) -> None:
    """Materialize the whole asset graph on the bundled data (cpu-small profile) and print the
    evaluation table. Extra options go to `python -m ffr_assets.demo` (see `ffr demo --help-demo`)."""
    args = list(ctx.args)
    if "--help-demo" in args:
        args = ["--help"]
    code = subprocess.call([sys.executable, "-m", "ffr_assets.demo", *args])
    raise typer.Exit(code)
