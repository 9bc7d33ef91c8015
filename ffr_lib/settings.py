"""Project-wide settings, read from the environment once. Every knob is documented here.

| variable | default | meaning |
|---|---|---|
| FFR_HOME | `<repo>/dagster_home` | where local state lives (embedded Postgres data, MLflow db, artifacts) |
| FFR_DATABASE_URL | unset | a Postgres >= 15 with pgvector >= 0.8; unset starts the embedded server |
| FFR_PG_PORT | `55432` | port of the embedded server (127.0.0.1 only) |
| FFR_PGDATA | `$FFR_HOME/pgdata` | data folder of the embedded server |
| FFR_PHOTOCHAT_DIR | `../shared/data/photochat` | PhotoChat files (read in place, never copied) |
| FFR_MODELS_DIR | `$FFR_HOME/models` | cache of converted offline weights (SmolLM2 safetensors, e5) |
| FFR_DB_CONNECT_TIMEOUT | `10` | seconds to wait for a database connection (libpq connect_timeout) |
| FFR_DB_RETRY_SECONDS | `15` | how long searches retry while the database is unreachable or restarting |
| FFR_INBOX_DIR | `$FFR_HOME/inbox` | folder the inbox sensor watches for new dialogue files |
| FFR_INBOX_SETTLE_SECONDS | `5` | a file must be unchanged this long before the sensor takes it |
| FFR_REPORTS_DIR | `reports/` | where evaluation reports are written (`<run>/` and `latest/`) |
| FFR_EXECUTOR | unset | `k8s` runs each step in its own pod (infra/README.md) |
| FFR_ENCODER_THREADS | unset | torch threads while the FEM encodes (ffr_lib.models.encoder) |
| MLFLOW_TRACKING_URI | `sqlite:///$FFR_HOME/mlflow.db` | MLflow tracking store |
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseModel):
    home: Path = Field(description="local state folder")
    database_url: str | None = Field(None, description="external Postgres URL; None = embedded")
    pgdata: Path
    photochat_dir: Path
    models_dir: Path
    mlflow_tracking_uri: str

    @classmethod
    def from_env(cls) -> Settings:
        home = Path(os.environ.get("FFR_HOME", REPO_ROOT / "dagster_home")).resolve()
        return cls(
            home=home,
            database_url=os.environ.get("FFR_DATABASE_URL") or None,
            pgdata=Path(os.environ.get("FFR_PGDATA", home / "pgdata")),
            photochat_dir=Path(
                os.environ.get("FFR_PHOTOCHAT_DIR", REPO_ROOT.parent / "shared/data/photochat")
            ),
            models_dir=Path(os.environ.get("FFR_MODELS_DIR", home / "models")),
            mlflow_tracking_uri=os.environ.get(
                "MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}"
            ),
        )


def get_settings() -> Settings:
    """Settings as the environment says now (not cached: tests change the environment)."""
    return Settings.from_env()
