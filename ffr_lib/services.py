"""Supervise long-running local services (the Dagster and MLflow web servers) as child processes.

Each service runs in its own session and process group (``start_new_session=True``) so that it
can be stopped as a whole: ``dagster dev`` started from a script ignores SIGTERM unless it leads its
own group, and its webserver, daemon and code servers are its children. Stopping sends SIGTERM to
the group, waits a grace period, then SIGKILLs whatever is left, including descendants recorded
while the service ran that might have left the group. Nothing here imports dagster or mlflow.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

import psutil
from pydantic import BaseModel, Field


class ServiceError(RuntimeError):
    """A service could not start, did not become healthy, or died."""


class ServiceSpec(BaseModel):
    """How to start one service and how to tell that it is up."""

    name: str = Field(description="human name, e.g. 'Dagster UI'")
    argv: list[str] = Field(description="command line")
    env: dict[str, str] = Field(default_factory=dict, description="environment of the process")
    cwd: Path | None = Field(default=None, description="working directory; None = current")
    url: str = Field(description="what the user opens")
    health_url: str = Field(description="answers HTTP 2xx once the service is up")
    log_path: Path = Field(description="stdout and stderr go here (truncated at start)")
    host: str = Field(description="interface the service binds")
    port: int = Field(description="port the service binds")


def _alive(proc: psutil.Process) -> bool:
    """True for a running process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_in_use(host: str, port: int) -> bool:
    """True if ``host:port`` cannot be bound (another process listens there)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers themselves set it: on Linux a listening socket still
        # blocks the bind, but connections lingering in TIME_WAIT (which do not stop a server
        # from starting) are not reported as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if a GET on ``url`` answers 2xx within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - local URL
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Service:
    """One supervised child process (and its process group)."""

    def __init__(self, spec: ServiceSpec) -> None:
        self.spec = spec
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        # Descendants seen while running, by pid; psutil.Process remembers the creation time,
        # so a recycled pid is never mistaken for one of ours.
        self.known: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        """Start the process in a new session / process group, logging to ``spec.log_path``."""
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.spec.log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.popen = subprocess.Popen(
                self.spec.argv,
                env=self.spec.env or None,
                cwd=self.spec.cwd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            self.close_log()
            raise ServiceError(
                f"cannot start {self.spec.name} ({self.spec.argv[0]}): {exc}"
            ) from exc
        self.record_tree()

    def returncode(self) -> int | None:
        """None while running, else the exit status."""
        return self.popen.poll() if self.popen else None

    def healthy(self) -> bool:
        return http_ok(self.spec.health_url)

    def record_tree(self) -> list[psutil.Process]:
        """Remember the process and all its current descendants; return the live ones."""
        if self.popen is None:
            return []
        try:
            root = psutil.Process(self.popen.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for proc in tree:
            self.known.setdefault(proc.pid, proc)
        return [p for p in self.known.values() if _alive(p)]

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the service's log."""
        try:
            text = self.spec.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def signal_all(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the process group and to recorded descendants outside it."""
        if self.popen is None:
            return
        pgid = self.popen.pid  # start_new_session makes the child its group leader
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        for proc in list(self.known.values()):
            if not _alive(proc):
                continue
            try:
                if os.getpgid(proc.pid) != pgid:
                    proc.send_signal(sig)
            except (ProcessLookupError, psutil.Error):
                pass

    def remaining(self) -> list[psutil.Process]:
        """Recorded processes (the service and its descendants) still alive."""
        if self.popen is not None:
            self.popen.poll()  # reap the direct child so it does not linger as a zombie
        return [p for p in self.known.values() if _alive(p)]

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_services(services: Iterable[Service], grace: float = 20.0) -> list[psutil.Process]:
    """Stop all services together: SIGTERM to every group, wait up to ``grace`` seconds for every
    recorded process to exit, then SIGKILL the rest. Returns processes that survived even that
    (should be empty)."""
    services = [s for s in services if s.popen is not None]
    for service in services:
        service.record_tree()
        service.signal_all(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not any(s.remaining() for s in services):
            break
        time.sleep(0.2)
    survivors: list[psutil.Process] = []
    for service in services:
        if service.remaining():
            service.signal_all(signal.SIGKILL)
            for proc in service.remaining():
                with contextlib.suppress(psutil.Error):
                    proc.kill()
    kill_deadline = time.monotonic() + 5.0
    while time.monotonic() < kill_deadline and any(s.remaining() for s in services):
        time.sleep(0.1)
    for service in services:
        if service.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                service.popen.wait(timeout=1.0)
        survivors.extend(service.remaining())
        service.close_log()
    return survivors


def check_ports(specs: Sequence[ServiceSpec]) -> None:
    """Raise ServiceError if two services want the same port or a port is taken."""
    seen: dict[int, str] = {}
    for spec in specs:
        if spec.port in seen:
            raise ServiceError(f"{spec.name} and {seen[spec.port]} both want port {spec.port}")
        seen[spec.port] = spec.name
        if port_in_use(spec.host, spec.port):
            raise ServiceError(
                f"port {spec.port} on {spec.host} is already in use, so {spec.name} cannot "
                "start there; stop whatever listens there or choose another port"
            )


class Supervisor:
    """Start services, wait until they answer, keep them running until a stop signal or until
    one dies, then stop all of them. Signal handlers are installed only by :meth:`run`."""

    def __init__(self, specs: Sequence[ServiceSpec], grace: float = 20.0) -> None:
        self.services = [Service(spec) for spec in specs]
        self.grace = grace
        self.stop_requested = threading.Event()
        self.stop_reason = ""

    def request_stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        self.stop_requested.set()

    def _dead(self) -> Service | None:
        return next((s for s in self.services if s.returncode() is not None), None)

    def wait_healthy(self, timeout: float) -> None:
        """Block until every service answers its health URL; raise ServiceError naming the one
        that died or timed out (with its log tail)."""
        pending = list(self.services)
        deadline = time.monotonic() + timeout
        while pending:
            if self.stop_requested.is_set():
                return
            dead = self._dead()
            if dead is not None:
                raise ServiceError(
                    f"{dead.spec.name} exited with status {dead.returncode()} while starting; "
                    f"last lines of {dead.spec.log_path}:\n{dead.log_tail()}"
                )
            pending = [s for s in pending if not s.healthy()]
            for service in self.services:
                service.record_tree()
            if not pending:
                return
            if time.monotonic() > deadline:
                names = ", ".join(s.spec.name for s in pending)
                tails = "\n".join(f"--- {s.spec.log_path}:\n{s.log_tail(20)}" for s in pending)
                raise ServiceError(f"{names} did not answer within {timeout:.0f} s\n{tails}")
            self.stop_requested.wait(0.5)

    def run(
        self,
        startup_timeout: float = 180.0,
        on_ready: Callable[[Sequence[Service]], None] | None = None,
        on_stopping: Callable[[str], None] | None = None,
    ) -> int:
        """Run until SIGINT/SIGTERM/SIGHUP (exit 0) or until a service dies (exit 1, error
        raised as ServiceError after everything is stopped). Ports are checked first."""
        check_ports([s.spec for s in self.services])

        def handler(signum: int, _frame: object) -> None:
            self.request_stop(signal.Signals(signum).name)

        watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, handler) for sig in watched}
        failure: ServiceError | None = None
        try:
            for service in self.services:
                service.start()
            self.wait_healthy(startup_timeout)
            if not self.stop_requested.is_set() and on_ready is not None:
                on_ready(self.services)
            while not self.stop_requested.is_set():
                dead = self._dead()
                if dead is not None:
                    failure = ServiceError(
                        f"{dead.spec.name} exited with status {dead.returncode()}; "
                        f"last lines of {dead.spec.log_path}:\n{dead.log_tail()}"
                    )
                    break
                for service in self.services:
                    service.record_tree()
                self.stop_requested.wait(1.0)
        except ServiceError as exc:
            failure = exc
        finally:
            if on_stopping is not None:
                on_stopping(self.stop_reason or ("failure" if failure else "exit"))
            survivors = stop_services(self.services, self.grace)
            for sig, old in previous.items():
                signal.signal(sig, old)
        if survivors:
            names = ", ".join(f"{p.pid}" for p in survivors)
            raise ServiceError(f"processes still alive after SIGKILL: {names}")
        if failure is not None:
            raise failure
        return 0
