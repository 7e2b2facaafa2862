"""Keep TensorFlow's and LiteRT's native log (C++ writes to file descriptor 2) off the user's terminal.

The Python API runs edgequant inside someone else's process: descriptor 2 is pointed
at a log file only while edgequant works, then given back. EDGEQUANT_DEBUG=1 keeps it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from edgequant.cache import cache_dir

NATIVE_LOG = "native-stderr.log"


@contextmanager
def native_log_to_file() -> Iterator[None]:
    """Within the block, what native code prints on stderr goes to the cache's native-stderr.log."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # effective when TensorFlow is not imported yet
    if os.environ.get("EDGEQUANT_DEBUG"):
        yield
        return
    try:
        cache_dir().mkdir(parents=True, exist_ok=True)
        log = os.open(cache_dir() / NATIVE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
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
