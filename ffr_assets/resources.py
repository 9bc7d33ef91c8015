"""Resources: where the database and MLflow are. Local defaults need no configuration."""

from dagster import ConfigurableResource
from pydantic import Field

_MIGRATED: set[str] = set()


class DatabaseResource(ConfigurableResource):
    """Postgres with pgvector. Empty ``url`` means FFR_DATABASE_URL, or else the embedded server
    (started on demand under FFR_HOME)."""

    url: str | None = Field(
        default=None, description="Postgres URL; empty uses FFR_DATABASE_URL or the embedded server"
    )

    def resolved_url(self) -> str:
        """The URL in use, with every migration applied (idempotent: a no-op once up to date)."""
        from ffr_lib.db import database_url, migrate

        url = self.url or database_url()
        if url not in _MIGRATED:
            migrate(url)
            _MIGRATED.add(url)
        return url


class MlflowResource(ConfigurableResource):
    """MLflow tracking store. Empty ``tracking_uri`` uses MLFLOW_TRACKING_URI or the local sqlite
    store under FFR_HOME."""

    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI")

    def configure(self) -> str:
        from ffr_lib.tracking import configure_mlflow

        return configure_mlflow(self.tracking_uri)
