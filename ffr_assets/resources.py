"""Resources: where the database and MLflow are. Local defaults need no configuration."""

from dagster import ConfigurableResource
from pydantic import Field


class DatabaseResource(ConfigurableResource):
    """Postgres with pgvector. Empty ``url`` means FFR_DATABASE_URL, or else the embedded server
    (started on demand under FFR_HOME)."""

    url: str | None = Field(
        default=None, description="Postgres URL; empty uses FFR_DATABASE_URL or the embedded server"
    )

    def resolved_url(self) -> str:
        from ffr_lib.db import database_url

        return self.url or database_url()


class MlflowResource(ConfigurableResource):
    """MLflow tracking store. Empty ``tracking_uri`` uses MLFLOW_TRACKING_URI or the local sqlite
    store under FFR_HOME."""

    tracking_uri: str | None = Field(default=None, description="MLflow tracking URI")

    def configure(self) -> str:
        from ffr_lib.tracking import configure_mlflow

        return configure_mlflow(self.tracking_uri)
