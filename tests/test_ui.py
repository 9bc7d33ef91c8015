"""`ffr ui`: both UIs come up on the given ports and stop cleanly, leaving no process behind; the
supervision underneath (ffr_lib.services) stops the survivor when one service dies, escalates to
SIGKILL, and reaches children that left the process group. Real processes throughout."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from browser.ui_process import alive, describe, running_ui, ui_env
from typer.testing import CliRunner

from ffr_lib.db import free_port
from ffr_lib.services import (
    Service,
    ServiceError,
    ServiceSpec,
    Supervisor,
    port_in_use,
    stop_services,
)

# What `dagster dev` and `mlflow server` run underneath; each must be seen, then be gone.
EXPECTED_CHILDREN = {
    "dagster dev": "dagster dev",
    "webserver": "dagster_webserver",
    "daemon": "dagster._daemon",
    "code server": "dagster code-server",
    "mlflow server": "mlflow server",
    "mlflow workers": "uvicorn",
}


@pytest.mark.timeout(200)
def test_ffr_ui_starts_both_uis_and_sigterm_leaves_no_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with running_ui(home) as ui:
        started = ui.wait_ready(timeout=150)
        time.sleep(2)  # let late children (the daemon's code server) appear before recording
        live = ui.record_tree()
        cmdlines = {p.pid: " ".join(p.cmdline()) for p in live}
        for what, needle in EXPECTED_CHILDREN.items():
            assert any(needle in c for c in cmdlines.values()), f"no {what} among {cmdlines}"
        assert ui.dagster_url in ui.output and ui.mlflow_url in ui.output
        # State went where the environment says, seeded with the project's instance config.
        assert (home / "dagster_home" / "dagster.yaml").read_text().count("telemetry") >= 1
        assert (home / "mlflow.db").exists()

        took = ui.stop(signal.SIGTERM, timeout=60)
        assert ui.popen.returncode == 0, ui.output
        time.sleep(0.5)
        left = [describe(p) for p in ui.tree.values() if alive(p)]
        assert not left, f"processes left after SIGTERM: {left}"
        assert not port_in_use("127.0.0.1", ui.dagster_port)
        assert not port_in_use("127.0.0.1", ui.mlflow_port)
        assert "Stopped." in ui.output
    print(f"ffr ui ready in {started:.1f} s, stopped in {took:.1f} s")


def test_ffr_ui_reports_a_port_in_use_and_starts_nothing(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ffr_lib.cli.ui", "--dagster-port", str(port)],
            env=ui_env(tmp_path / "home"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "already in use" in result.stderr
    assert "Dagster UI" in result.stderr
    assert not (tmp_path / "home" / "logs" / "dagster.log").exists()  # nothing was started


def test_ffr_ui_is_a_registered_command() -> None:
    from ffr_lib.cli import app

    result = CliRunner().invoke(app, ["ui", "--help"])
    assert result.exit_code == 0, result.output
    assert "--dagster-port" in result.output and "--mlflow-port" in result.output


# --- supervision with small real servers ------------------------------------------------------

# An HTTP server that ignores SIGTERM and first starts a child in a session of its own (as a
# daemonising server might), which ignores SIGTERM too: only SIGKILL to recorded pids ends both.
STUBBORN = textwrap.dedent(
    """
    import http.server, signal, subprocess, sys
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    subprocess.Popen(
        [sys.executable, "-c",
         "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
        start_new_session=True,
    )
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler
                           ).serve_forever()
    """
)


def http_spec(name: str, tmp_path: Path, script: str | None = None) -> ServiceSpec:
    port = free_port()
    if script is None:
        argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    else:
        argv = [sys.executable, "-c", script, str(port)]
    return ServiceSpec(
        name=name,
        argv=argv,
        cwd=tmp_path,
        url=f"http://127.0.0.1:{port}",
        health_url=f"http://127.0.0.1:{port}/",
        log_path=tmp_path / f"{name}.log",
        host="127.0.0.1",
        port=port,
    )


@pytest.mark.timeout(60)
def test_supervisor_stops_the_survivor_and_reports_the_dead_one(tmp_path: Path) -> None:
    supervisor = Supervisor([http_spec("alpha", tmp_path), http_spec("beta", tmp_path)], grace=5)
    before = signal.getsignal(signal.SIGTERM)
    pids: list[int] = []

    def kill_beta(services: list[Service]) -> None:
        pids.extend(s.pid for s in services if s.pid)
        services[1].signal_all(signal.SIGKILL)

    with pytest.raises(ServiceError) as info:
        supervisor.run(startup_timeout=30, on_ready=kill_beta)
    message = str(info.value)
    assert "beta exited with status -9" in message
    assert "beta.log" in message
    assert len(pids) == 2
    assert all(not s.remaining() for s in supervisor.services)
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers it installed are removed


@pytest.mark.timeout(60)
def test_stop_escalates_to_sigkill_and_reaches_children_outside_the_group(tmp_path: Path) -> None:
    service = Service(http_spec("stubborn", tmp_path, STUBBORN))
    service.start()
    try:
        deadline = time.monotonic() + 30
        while not service.healthy():
            assert service.returncode() is None, service.log_tail()
            assert time.monotonic() < deadline, "stubborn server never answered"
            time.sleep(0.2)
        recorded = service.record_tree()
        assert len(recorded) == 2, [describe(p) for p in recorded]  # server + escaped child
        start = time.monotonic()
        survivors = stop_services([service], grace=1.0)
        took = time.monotonic() - start
        assert survivors == []
        assert took >= 1.0  # SIGTERM was ignored: it had to wait for the grace period
        assert not any(alive(p) for p in recorded)
    finally:
        service.signal_all(signal.SIGKILL)


def test_a_service_that_never_answers_times_out_with_its_log(tmp_path: Path) -> None:
    spec = http_spec("silent", tmp_path, "import sys, time; print('booting'); time.sleep(60)")
    supervisor = Supervisor([spec], grace=2)
    start = time.monotonic()
    with pytest.raises(ServiceError, match=r"silent did not answer within 2 s"):
        supervisor.run(startup_timeout=2)
    assert time.monotonic() - start < 15
    assert all(not s.remaining() for s in supervisor.services)


def test_two_services_on_one_port_are_refused(tmp_path: Path) -> None:
    first = http_spec("one", tmp_path)
    second = first.model_copy(update={"name": "two"})
    with pytest.raises(ServiceError, match="both want port"):
        Supervisor([first, second]).run(startup_timeout=5)


def test_a_service_that_cannot_start_stops_the_one_already_running(tmp_path: Path) -> None:
    running = http_spec("running", tmp_path)
    broken = http_spec("broken", tmp_path).model_copy(update={"argv": [str(tmp_path / "nope")]})
    supervisor = Supervisor([running, broken], grace=5)
    with pytest.raises(ServiceError, match=r"cannot start broken"):
        supervisor.run(startup_timeout=30)
    first = supervisor.services[0]
    assert first.pid is not None and first.known  # it had been started ...
    assert not first.remaining()  # ... and was stopped
