"""Progress of a batch: a Rich display on a terminal, plain periodic log lines otherwise.

Both show done / failed / remaining, the rate, the ETA and the load per
worker process (items finished by each in the last window).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("mmdx.batch")


class Reporter(Protocol):
    def start(self, total: int, done: int, failed: int) -> None: ...
    def advance(self, ok: bool, pid: int) -> None: ...
    def stop(self) -> None: ...


class _Counts:
    def __init__(self) -> None:
        self.total = self.done = self.failed = 0
        self.started = time.monotonic()
        self.new = 0
        self.recent: deque[int] = deque(maxlen=64)

    def add(self, ok: bool, pid: int) -> None:
        self.done += ok
        self.failed += not ok
        self.new += 1
        self.recent.append(pid)

    @property
    def remaining(self) -> int:
        return max(self.total - self.done - self.failed, 0)

    @property
    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.new / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        return self.remaining / self.rate if self.rate > 0 else None

    def load(self) -> str:
        """Share of the last items finished by each worker process."""
        by = Counter(self.recent)
        return " ".join(f"w{i}:{n}" for i, (_, n) in enumerate(sorted(by.items()))) or "-"


class RichReporter:
    """A live bar on the terminal."""

    def __init__(self, console: Console) -> None:
        self.counts = _Counts()
        self.progress = Progress(
            TextColumn("[bold]batch[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]} · {task.fields[rate]:.2f}/s · load {task.fields[load]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("batch", total=0, failed=0, rate=0.0, load="-")

    def start(self, total: int, done: int, failed: int) -> None:
        c = self.counts
        c.total, c.done, c.failed = total, done, failed
        self.progress.update(self.task, total=total, completed=done + failed, failed=failed)
        self.progress.start()

    def advance(self, ok: bool, pid: int) -> None:
        c = self.counts
        c.add(ok, pid)
        self.progress.update(self.task, completed=c.done + c.failed, failed=c.failed, rate=c.rate, load=c.load())

    def stop(self) -> None:
        self.progress.stop()


class LogReporter:
    """A log line every ``every_s`` seconds (and at the end) when output is not a terminal."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.counts = _Counts()
        self.every_s = every_s
        self._last = 0.0

    def _line(self) -> None:
        c = self.counts
        eta = "-" if c.eta_s is None else f"{c.eta_s:.0f} s"
        log.info(
            "batch: %d done, %d failed, %d remaining of %d; %.2f items/s; ETA %s; load %s",
            c.done, c.failed, c.remaining, c.total, c.rate, eta, c.load(),
        )  # fmt: skip

    def start(self, total: int, done: int, failed: int) -> None:
        c = self.counts
        c.total, c.done, c.failed = total, done, failed
        self._last = time.monotonic()
        self._line()

    def advance(self, ok: bool, pid: int) -> None:
        self.counts.add(ok, pid)
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self._line()

    def stop(self) -> None:
        self._line()


class QuietReporter:
    def start(self, total: int, done: int, failed: int) -> None:
        pass

    def advance(self, ok: bool, pid: int) -> None:
        pass

    def stop(self) -> None:
        pass


def reporter_for(console: Console, *, quiet: bool = False, every_s: float = 10.0) -> Reporter:
    if quiet:
        return QuietReporter()
    return RichReporter(console) if console.is_terminal else LogReporter(every_s)
