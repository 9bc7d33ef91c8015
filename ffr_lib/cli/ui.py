"""`ffr ui`: the Dagster UI (`dagster dev`) and the MLflow UI (`mlflow server`) on localhost.

Both run as child processes in their own process groups (ffr_lib never imports dagster); Ctrl-C
or SIGTERM stops both, SIGTERM first and SIGKILL after a grace period, leaving no orphans. If one
dies the other is stopped too and the command exits non-zero with the dead one's log tail.
Also runnable as ``python -m ffr_lib.cli.ui``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

import typer
from pydantic import BaseModel, Field

from ffr_lib.services import Service, ServiceError, ServiceSpec, Supervisor
from ffr_lib.settings import DAGSTER_HOME, REPO_ROOT, Settings, get_settings

DAGSTER_MODULE = "ffr_assets.definitions"
# The instance config seeded into a new DAGSTER_HOME (sqlite storage, telemetry off).
INSTANCE_TEMPLATE = REPO_ROOT / "dagster_home" / "dagster.yaml"


class UiConfig(BaseModel):
    """Where the two UIs listen and how patiently they are started and stopped."""

    host: str = Field("127.0.0.1", description="interface both servers bind")
    dagster_port: int = Field(3000, ge=1, le=65535)
    mlflow_port: int = Field(5000, ge=1, le=65535)
    startup_timeout: float = Field(180.0, gt=0, description="seconds until both must answer")
    grace: float = Field(20.0, ge=0, description="seconds between SIGTERM and SIGKILL")


def _probe_host(host: str) -> str:
    """Where to send health checks: a wildcard bind is reached through loopback."""
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME, or FFR_HOME when unset (the Makefile sets both to <repo>/dagster_home)."""
    return DAGSTER_HOME.get() if DAGSTER_HOME.is_set() else settings.home.resolve()


def prepare_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME and seed it with the project's instance config if it has none."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists() and INSTANCE_TEMPLATE.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, target)
    return home


def service_specs(config: UiConfig, settings: Settings) -> list[ServiceSpec]:
    """The Dagster and MLflow services for ``config``. MLflow is left out when the tracking URI
    is a remote server (http/https): there is nothing local to start then."""
    home = settings.home
    logs = home / "logs"
    dhome = prepare_dagster_home(dagster_home(settings))
    base_env = dict(os.environ)
    base_env["DAGSTER_HOME"] = str(dhome)
    base_env["FFR_HOME"] = str(home)
    probe = _probe_host(config.host)

    def web_service(
        name: str, argv: list[str], env: dict, port: int, health_path: str, log_path: Path
    ) -> ServiceSpec:
        """A web UI bound to ``config.host``:``port`` (``--host``/``--port`` appended)."""
        return ServiceSpec(
            name=name,
            argv=[*argv, "--host", config.host, "--port", str(port)],
            env=env,
            url=f"http://{config.host}:{port}",
            health_url=f"http://{probe}:{port}{health_path}",
            log_path=log_path,
            host=config.host,
            port=port,
        )

    specs = [
        web_service(
            name="Dagster UI",
            argv=[
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-m",
                DAGSTER_MODULE,
                # The project root on sys.path, so the code location loads from any cwd.
                "--working-directory",
                str(REPO_ROOT),
            ],
            env=base_env,
            port=config.dagster_port,
            health_path="/server_info",
            log_path=logs / "dagster.log",
        )
    ]
    uri = settings.mlflow_tracking_uri
    if not uri.startswith(("http://", "https://")):
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        artifacts = home / "mlartifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        mlflow_env = dict(base_env)
        # The job-execution backend costs ~2 GB of memory and FFR does not use it.
        mlflow_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        mlflow_env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        specs.append(
            web_service(
                name="MLflow UI",
                argv=[
                    sys.executable,
                    "-m",
                    "mlflow",
                    "server",
                    "--backend-store-uri",
                    uri,
                    "--default-artifact-root",
                    str(artifacts),
                    # Proxied uploads land in the same folder, never in ./mlartifacts of the cwd.
                    "--artifacts-destination",
                    str(artifacts),
                    "--workers",
                    "1",
                ],
                env=mlflow_env,
                port=config.mlflow_port,
                health_path="/health",
                log_path=logs / "mlflow.log",
            )
        )
    return specs


def ui(
    dagster_port: int = typer.Option(3000, help="port of the Dagster UI"),
    mlflow_port: int = typer.Option(5000, help="port of the MLflow UI"),
    host: str = typer.Option("127.0.0.1", help="interface to bind (0.0.0.0 exposes both UIs)"),
    startup_timeout: float = typer.Option(180.0, help="seconds to wait for both to answer"),
    grace: float = typer.Option(20.0, help="seconds between SIGTERM and SIGKILL on stop"),
) -> None:
    """Start the Dagster UI and the MLflow UI on localhost until Ctrl-C (or SIGTERM)."""
    config = UiConfig(
        host=host,
        dagster_port=dagster_port,
        mlflow_port=mlflow_port,
        startup_timeout=startup_timeout,
        grace=grace,
    )
    settings = get_settings()
    specs = service_specs(config, settings)
    if len(specs) == 1:
        typer.echo(f"MLflow tracking is remote ({settings.mlflow_tracking_uri}); not starting one.")
    typer.echo(
        f"Starting {', '.join(s.name for s in specs)} (logs in {settings.home / 'logs'}) ..."
    )

    def ready(services: Sequence[Service]) -> None:
        for service in services:
            typer.secho(f"{service.spec.name:<11} {service.spec.url}", fg=typer.colors.GREEN)
        typer.echo("Press Ctrl-C to stop both.")

    def stopping(reason: str) -> None:
        typer.echo(f"Stopping ({reason}) ...")

    supervisor = Supervisor(specs, grace=config.grace)
    try:
        supervisor.run(config.startup_timeout, on_ready=ready, on_stopping=stopping)
    except ServiceError as exc:
        typer.secho(f"ffr ui: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from exc
    typer.echo("Stopped.")


def main() -> None:  # pragma: no cover - module entry
    typer.run(ui)


if __name__ == "__main__":  # pragma: no cover
    main()
