"""Keep TensorFlow's and LiteRT's native log (C++ writes to file descriptor 2) off the user's terminal.

The Python API runs edgequant inside someone else's process: descriptor 2 is pointed
at a log file only while edgequant works, then given back. EDGEQUANT_DEBUG=1 keeps it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgequant.process.cache import cache_dir

KEPT_RUN_LOGS = 20


def open_run_log() -> tuple[Path, int]:
    """A new log file for this run under the cache's logs/, and its descriptor. The newest KEPT_RUN_LOGS are kept,
    and so is every log whose process is still running, however many other runs started since.

    One file per run, so concurrent runs never truncate each other's log. Raises OSError when it cannot be made.
    """
    log_dir = cache_dir() / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    path = log_dir / f"{stamp}-{os.getpid()}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for old in sorted(log_dir.glob("*.log"))[:-KEPT_RUN_LOGS]:
        if not _writer_running(old):  # a running build's log stays: its error message may name it
            old.unlink(missing_ok=True)
    return path, fd


def _writer_running(log: Path) -> bool:
    """Whether the process that named `log` (<stamp>-<pid>.log) is still running (a reused pid keeps it too)."""
    try:
        pid = int(log.stem.rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return False  # not a run log's name
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user's process
    except OSError:
        return False
    return True


@contextmanager
def native_log_to_file() -> Iterator[None]:
    """Within the block, what native code prints on stderr goes to a run log under the cache."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # effective when TensorFlow is not imported yet
    if os.environ.get("EDGEQUANT_DEBUG"):
        yield
        return
    try:
        _, log = open_run_log()
    except OSError:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log, 2)
    os.close(log)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
