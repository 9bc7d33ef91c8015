"""Progress lines for long steps (what Dagster's run log shows) and the torch thread choice."""

from __future__ import annotations

import logging

import pytest

from ffr_lib.progress import Progress, track
from ffr_lib.threads import wanted_threads


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_are_throttled_and_report_rate_and_time_left(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = _Clock()
    with caplog.at_level(logging.INFO, logger="ffr_lib.progress"):
        bar = Progress(100, "embed", unit="texts", every=10, clock=clock)
        clock.now = 5
        bar.update(10)  # 5 s since the first line: no line yet
        clock.now = 10
        bar.update(10)  # 20 done in 10 s: 2/s, 80 left -> 40 s
        clock.now = 12
        bar.update(10)
        clock.now = 50
        bar.update(70)
        bar.close()
    assert bar.lines == [
        "embed: 0/100 texts",
        "embed: 20/100 texts (20%), 2.0 texts/s, ~40s left",
        "embed: 100/100 texts in 50s",
    ]
    assert [r.getMessage() for r in caplog.records] == bar.lines


def test_progress_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FFR_PROGRESS", "0")
    assert list(track(range(3), "quiet")) == [0, 1, 2]
    bar = Progress(3, "quiet")
    bar.update(3)
    bar.close()
    assert bar.lines == []


def test_track_counts_every_item() -> None:
    seen = []
    for item in track([1, 2, 3], "items", every=0):
        seen.append(item)
    assert seen == [1, 2, 3]


def test_minutes_in_time_left() -> None:
    clock = _Clock()
    bar = Progress(1000, "long", every=0, clock=clock)
    clock.now = 60
    bar.update(100)  # 100/min, 900 left -> 9 min
    assert bar.lines[-1] == "long: 100/1000 it (10%), 1.7 it/s, ~9m00s left"
    slow = Progress(24, "FEM training", unit="steps", every=0, clock=clock)
    clock.now = 110
    slow.update(2)  # 2 steps in 50 s
    assert slow.lines[-1] == "FEM training: 2/24 steps (8%), 25.0 s each, ~9m10s left"


def test_threads_follow_the_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FFR_TORCH_THREADS", raising=False)
    assert wanted_threads(load=1.0, cores=2) == 2  # our own threads alone
    assert wanted_threads(load=3.0, cores=2) == 2
    assert wanted_threads(load=3.5, cores=2) == 1  # others keep the cores busy
    assert wanted_threads(load=20.0, cores=16) == 16
    monkeypatch.setenv("FFR_TORCH_THREADS", "3")
    assert wanted_threads(load=50.0, cores=2) == 3
