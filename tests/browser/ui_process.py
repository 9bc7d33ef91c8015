"""Run `ffr ui` as a real subprocess for tests: free ports, a temp FFR_HOME / DAGSTER_HOME, its
output captured, its process tree recorded while it runs, and a cleanup that leaves nothing behind
even when a test fails half way."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ffr_lib.db import free_port
from ffr_lib.services import http_ok


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie (an exited process waiting to be reaped is gone for us)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def describe(proc: psutil.Process) -> str:
    try:
        return f"{proc.pid}: {' '.join(proc.cmdline())[:160]}"
    except psutil.Error:
        return f"{proc.pid}: <gone>"


@dataclass
class UiProcess:
    """A running `ffr ui` (``python -m ffr_lib.cli.ui``) and what was seen of it."""

    popen: subprocess.Popen[str]
    home: Path
    dagster_port: int
    mlflow_port: int
    lines: list[str] = field(default_factory=list)
    tree: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def dagster_url(self) -> str:
        return f"http://127.0.0.1:{self.dagster_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://127.0.0.1:{self.mlflow_port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def record_tree(self) -> list[psutil.Process]:
        """Remember the command and all its descendants now; return the live ones."""
        try:
            root = psutil.Process(self.popen.pid)
            for proc in [root, *root.children(recursive=True)]:
                self.tree.setdefault(proc.pid, proc)
        except psutil.Error:
            pass
        return [p for p in self.tree.values() if alive(p)]

    def wait_ready(self, timeout: float = 150.0) -> float:
        """Wait until both UIs answer and the command printed both URLs; return the seconds
        it took. Fails with the command's output if it exits first or time runs out."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            self.record_tree()
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"ffr ui exited with {self.popen.returncode} before it was ready:\n"
                    f"{self.output}"
                )
            if (
                "Press Ctrl-C" in self.output
                and http_ok(f"{self.dagster_url}/server_info")
                and http_ok(f"{self.mlflow_url}/health")
            ):
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"ffr ui was not ready within {timeout:.0f} s:\n{self.output}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 60.0) -> float:
        """Send ``sig`` to the command and wait for it to exit; return the seconds it took."""
        self.record_tree()
        start = time.monotonic()
        self.popen.send_signal(sig)
        self.popen.wait(timeout=timeout)
        return time.monotonic() - start

    def kill_leftovers(self) -> list[str]:
        """SIGKILL anything of ours still alive (only after a failure); return what was left."""
        left = [p for p in self.tree.values() if alive(p)]
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        return [describe(p) for p in left]


def ui_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a test `ffr ui`: all state under ``home``."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env["FFR_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(home / "dagster_home")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


@contextlib.contextmanager
def running_ui(
    home: Path, extra_env: Mapping[str, str] | None = None, grace: float = 20.0
) -> Iterator[UiProcess]:
    """Start `ffr ui` on free ports with its state in ``home``; on exit make sure it and every
    process it started are gone (SIGTERM, then SIGKILL for anything recorded)."""
    dagster_port, mlflow_port = free_port(), free_port()
    while mlflow_port == dagster_port:
        mlflow_port = free_port()
    argv = [
        sys.executable,
        "-m",
        "ffr_lib.cli.ui",
        "--dagster-port",
        str(dagster_port),
        "--mlflow-port",
        str(mlflow_port),
        "--grace",
        str(grace),
    ]
    popen = subprocess.Popen(
        argv,
        env=ui_env(home, extra_env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    ui = UiProcess(popen=popen, home=home, dagster_port=dagster_port, mlflow_port=mlflow_port)

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            ui.lines.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield ui
    finally:
        if popen.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                ui.stop(signal.SIGTERM, timeout=grace + 30)
        if popen.poll() is None:
            popen.kill()
            popen.wait(timeout=10)
        time.sleep(0.2)
        ui.kill_leftovers()
        reader.join(timeout=5)
