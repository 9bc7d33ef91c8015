"""Browser tests: a real headless Chromium drives the Dagster and MLflow UIs started by `ffr ui`.
A package so that its helpers import as ``browser.*`` from tests in the parent folder too."""
