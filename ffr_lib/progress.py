"""Progress of long loops, for people at a terminal and for the Dagster UI alike.

:class:`Progress` draws a tqdm bar when stderr is an interactive terminal and, in any case, writes
INFO lines to the ``ffr_lib.progress`` logger at most every ``every`` seconds (plus a first and a
last line). Dagster captures the ``ffr_lib`` loggers (``python_logs`` in ``dagster.yaml``), so a
run's log in the UI shows how far a long step is and how long it still needs.

    with Progress(len(texts), "embed utterances", unit="texts") as bar:
        for chunk in chunks:
            ...
            bar.update(len(chunk))

``FFR_PROGRESS=0`` turns both off (log lines and bar); ``FFR_PROGRESS_EVERY`` sets the seconds
between log lines (both in ``ffr_lib.settings``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from ffr_lib.settings import PROGRESS, PROGRESS_EVERY

log = logging.getLogger("ffr_lib.progress")

T = TypeVar("T")


def _enabled() -> bool:
    return bool(PROGRESS.get())


def _every_default() -> float:
    return float(PROGRESS_EVERY.get())


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes}m{seconds:02d}s"


class Progress:
    """Counts work done out of ``total``; see the module docstring."""

    def __init__(
        self,
        total: int,
        desc: str,
        *,
        unit: str = "it",
        every: float | None = None,
        logger: logging.Logger | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.total = max(0, int(total))
        self.desc = desc
        self.unit = unit
        self.every = _every_default() if every is None else every
        self.log = logger or log
        self.clock = clock
        self.done = 0
        self.enabled = _enabled()
        self.started = self.clock()
        self._last_line = self.started
        self._bar: Any = None
        self.lines: list[str] = []
        if not self.enabled:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=f" {unit}", leave=False)
        self._emit(f"{desc}: 0/{self.total} {unit}")

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self.log.info(line)

    def line(self) -> str:
        """The current state as one line: count, share, rate and time left."""
        elapsed = max(self.clock() - self.started, 1e-9)
        rate = self.done / elapsed
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        left = (self.total - self.done) / rate if rate > 0 and self.total else None
        eta = f", ~{_duration(left)} left" if left is not None else ""
        speed = f"{rate:.1f} {self.unit}/s" if rate >= 1 or rate == 0 else f"{1 / rate:.1f} s each"
        return f"{self.desc}: {self.done}/{self.total} {self.unit}{share}, {speed}{eta}"

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
        now = self.clock()
        if now - self._last_line >= self.every and self.done < self.total:
            self._last_line = now
            self._emit(self.line())

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elapsed = self.clock() - self.started
        self._emit(f"{self.desc}: {self.done}/{self.total} {self.unit} in {_duration(elapsed)}")
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    items: Iterable[T], desc: str, *, total: int | None = None, unit: str = "it", **kwargs: Any
) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total`` defaults to ``len(items)``)."""
    if total is None:
        total = len(items) if hasattr(items, "__len__") else 0  # type: ignore[arg-type]
    with Progress(total, desc, unit=unit, **kwargs) as bar:
        for item in items:
            yield item
            bar.update(1)


def trainer_progress(desc: str, metric: str = "loss") -> Any:
    """A transformers ``TrainerCallback`` reporting optimizer steps done out of the trainer's
    own ``max_steps``, the latest logged ``metric`` (``loss`` for SFT/FEM, ``reward`` for GRPO)
    and the time left, through :class:`Progress` (a bar at a terminal, log lines for Dagster)."""
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        bar: Progress | None = None

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.bar = Progress(state.max_steps, desc, unit="steps")

        def _show_latest(self, state, keys: tuple[str, ...]) -> None:  # noqa: ANN001
            values = [e[k] for e in state.log_history for k in keys if k in e]
            if values and self.bar is not None:
                self.bar.desc = f"{desc} ({metric} {values[-1]:.3f})"

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                self._show_latest(state, (metric,))
                self.bar.update(1)

        def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if self.bar is not None:
                # The trainer logs the run's mean (train_loss) just before this call.
                self._show_latest(state, (metric, f"train_{metric}"))
                self.bar.close()

    return _Report()
