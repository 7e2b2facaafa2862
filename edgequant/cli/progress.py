"""A progress display for the library's `Progress` protocol, on stderr: rich bars on a terminal, plain lines
otherwise (output redirected to a file or a CI log, where rich would draw only once, at the end)."""

from __future__ import annotations

import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _RichTask:
    def __init__(self, progress: Progress, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)

    def __enter__(self) -> "_RichTask":
        return self

    def __exit__(self, *exc) -> None:
        task = self._progress.tasks[self._id]
        if task.total is None:
            self._progress.update(self._id, total=max(task.completed, 1), completed=max(task.completed, 1))
        else:
            self._progress.update(self._id, completed=task.total)


class RichProgress:
    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )

    def task(self, description: str, total: int | None = None) -> _RichTask:
        return _RichTask(self._progress, self._progress.add_task(description, total=total))

    def log(self, message: str) -> None:
        self._progress.console.print(message)

    def __enter__(self) -> "RichProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()


LINE_INTERVAL_SECONDS = 30.0  # a running task prints its count at most this often, in line mode


class _LineTask:
    def __init__(self, description: str, total: int | None):
        self._description, self._total, self._done = description, total, 0
        self._started = self._printed = time.monotonic()
        _line(f"{description} ...")

    def advance(self, n: int = 1) -> None:
        self._done += n
        now = time.monotonic()
        if self._total is not None and self._done < self._total and now - self._printed >= LINE_INTERVAL_SECONDS:
            self._printed = now
            _line(f"{self._description}: {self._count()} ({now - self._started:.0f} s)")

    def _count(self) -> str:
        return f"{self._done}/{self._total}" if self._total is not None else str(self._done)

    def __enter__(self) -> "_LineTask":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        seconds = time.monotonic() - self._started
        if exc_type is None:
            _line(f"{self._description}: done in {seconds:.1f} s")


class LineProgress:
    """One line on stderr when a task starts and when it ends, and its count every LINE_INTERVAL_SECONDS."""

    def task(self, description: str, total: int | None = None) -> _LineTask:
        return _LineTask(description, total)

    def log(self, message: str) -> None:
        _line(message)

    def __enter__(self) -> "LineProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass


LINE_PREFIX = "[edgequant] "  # not "edgequant: ", which starts the lines a CI log is searched for: errors, warnings, gates


def _line(text: str) -> None:
    print(f"{LINE_PREFIX}{text}", file=sys.stderr, flush=True)


def progress_for_stderr() -> RichProgress | LineProgress:
    """Rich bars when stderr is a terminal, lines when it is redirected."""
    console = Console(stderr=True)
    return RichProgress(console) if console.is_terminal else LineProgress()
