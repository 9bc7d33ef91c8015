"""`python -m ffr_lib.cli ...`: the `ffr` command without the installed entry point."""

from ffr_lib.cli import app

app(prog_name="ffr")
