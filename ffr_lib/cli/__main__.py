"""`python -m ffr_lib.cli ...` runs the `ffr` command line (same as the `ffr` script)."""

from ffr_lib.cli import app

app(prog_name="ffr")
