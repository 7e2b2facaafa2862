"""SIGINT and SIGTERM stop a build before its commit, and never after it.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. When that is
inside TensorFlow's cleanup (a `__del__`, a finalizer, a generator being closed), Python prints
"Exception ignored" and carries on, and the build would go on to commit. So the handler also
records the signal: `check()`, called at every progress step and once more at the commit point,
raises again, and a build that has seen a signal never commits.

SIGTERM gets the same treatment, as `Terminated` (exit 143), so the `finally` blocks run: the
staging folder and the temporary folder are removed, and `subprocess.run` kills the qemu child
it is waiting for. Cleanup itself runs `shielded()`: a second signal is recorded, not raised, so
it cannot cut the cleanup short.

Once the commit point is passed the build has happened: later signals are only recorded, and the
build finishes normally. So exit 0 means the new build is in place, and exit 130 or 143 means
the output directory holds exactly what it held before.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgequant.process.scratch import scratch_prefix

EXIT_TERMINATED = 128 + signal.SIGTERM  # 143, the shell's convention for "ended by SIGTERM"
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(KeyboardInterrupt):
    """SIGTERM asked the build to stop. A KeyboardInterrupt, so everything that cleans up after Ctrl-C runs."""

    exit_code = EXIT_TERMINATED


class Interrupted(Exception):
    """A signal stopped a command. Not a KeyboardInterrupt: typer turns those into a bare exit code 130,
    losing SIGTERM's 143 and the message, while this reaches the CLI's entry point as it is."""

    def __init__(self, stop: KeyboardInterrupt):
        super().__init__(str(stop) or "interrupted")
        self.exit_code = getattr(stop, "exit_code", 128 + signal.SIGINT)


class _State:
    depth = 0  # nesting of stop_on_signals(): only the outermost one installs and restores handlers
    received: list[int] = []
    shield = 0
    committed = False


def _stop(signum: int) -> KeyboardInterrupt:
    return Terminated("terminated (SIGTERM)") if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, _frame) -> None:
    _State.received.append(signum)
    if not _State.shield and not _State.committed:
        raise _stop(signum)


def check() -> None:
    """Raise if a signal arrived since the build started, even if its exception was swallowed."""
    if _State.received and not _State.committed:
        raise _stop(_State.received[0])


@contextmanager
def stop_on_signals(*, ignore_after_commit: bool = False) -> Iterator[None]:
    """Handle SIGINT and SIGTERM as described above for the duration of the block (main thread only).

    A signal the process ignores (SIGINT in a background job) stays ignored. If a signal arrived and
    the block ends with another error (TensorFlow may turn the KeyboardInterrupt into its own
    exception), the signal's exception is raised instead, so the exit code says what happened.
    `ignore_after_commit`: for a process that exits right after the block, keep ignoring the signals
    once a build is committed, so its exit code still says the build happened.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outermost = _State.depth == 0
    previous = {}
    if outermost:
        _State.received, _State.shield, _State.committed = [], 0, False
        for signum in _SIGNALS:
            if signal.getsignal(signum) is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, _handler)
    _State.depth += 1
    try:
        yield
        if outermost:
            check()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        if _State.received and not _State.committed:
            raise _stop(_State.received[0]) from exc
        raise
    finally:
        _State.depth -= 1
        if outermost:
            for signum, handler in previous.items():
                signal.signal(signum, signal.SIG_IGN if ignore_after_commit and _State.committed else handler)
            _State.received = []  # handled: nothing carries over to the next build


class _Command:
    terminated = False  # SIGTERM arrived while a command ran


def _terminate(_signum, _frame) -> None:
    _Command.terminated = True
    raise Terminated("terminated (SIGTERM)")


@contextmanager
def sigterm_stops_any_command() -> Iterator[None]:
    """For the whole command, SIGTERM raises `Terminated` in the main thread instead of ending the process
    on the spot, so `finally` blocks remove temporary folders and kill child processes, as after Ctrl-C.
    (`stop_on_signals` refines this for build and quantize.)"""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is signal.SIG_IGN:
        yield
        return
    _Command.terminated = False
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        # a committed build ignores SIGTERM until the process exits (its exit code must say it happened):
        # leave that in place through the interpreter's shutdown
        if signal.getsignal(signal.SIGTERM) is _terminate:
            signal.signal(signal.SIGTERM, previous)


def sigterm_arrived() -> bool:
    """Whether SIGTERM stopped the command: typer turns every KeyboardInterrupt into a bare exit code 130."""
    return _Command.terminated


def handled() -> None:
    """Say that the KeyboardInterrupt was handled, so the process exits with the code the CLI returns.

    CPython 3.11 sets a flag when a KeyboardInterrupt leaves code run through `PyRun_String`, as
    TensorFlow's and LiteRT's pybind11 code runs some, and `python -m` then ends the process by
    SIGINT at exit (status -2) even though edgequant caught the interrupt and returns 130.
    """
    import ctypes

    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (AttributeError, ValueError):
        pass  # a Python without that flag (3.12 keeps it in its runtime state, not a symbol)


@contextmanager
def shielded() -> Iterator[None]:
    """Signals arriving in this block are recorded, not raised: for cleanup that must run to its end."""
    _State.shield += 1
    try:
        yield
    finally:
        _State.shield -= 1


@contextmanager
def commit_point() -> Iterator[None]:
    """The block that makes a build visible. A signal recorded before it stops the build here;
    one arriving during or after it is only recorded, and the build completes."""
    with shielded():
        check()
        yield
        _State.committed = True


@contextmanager
def temporary_dir(kind: str) -> Iterator[Path]:
    """A temporary folder removed at the end, even when a second signal arrives during the removal."""
    path = Path(tempfile.mkdtemp(prefix=scratch_prefix(kind)))
    try:
        yield path
    finally:
        with shielded():
            shutil.rmtree(path, ignore_errors=True)


class CheckingProgress:
    """Wraps a Progress: checks for a recorded signal at every task start, step and end."""

    def __init__(self, inner):
        self.inner = inner

    @contextmanager
    def task(self, description: str, total: int | None = None):
        check()
        with self.inner.task(description, total) as task:
            yield _CheckingTask(task)
        check()

    def log(self, message: str) -> None:
        self.inner.log(message)


class _CheckingTask:
    def __init__(self, inner):
        self.inner = inner

    def advance(self, n: int = 1) -> None:
        check()
        self.inner.advance(n)
