"""Temporary folders named after the process that owns them, so a later run can remove a killed run's.

A SIGKILLed build cannot clean up after itself: its `edgequant-<kind>-<pid>-*`
folders stay in the temporary directory. Every CLI run sweeps the ones whose
owner process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

_NAME = re.compile(r"edgequant-[a-z]+-(\d+)-")


def scratch_prefix(kind: str) -> str:
    """The `prefix=` for tempfile: names the kind of work and this process."""
    return f"edgequant-{kind}-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def sweep_orphans(root: str | Path | None = None) -> list[Path]:
    """Remove this user's scratch folders whose owner process has ended; return what was removed."""
    root = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    uid = os.getuid()
    for path in entries:
        match = _NAME.match(path.name)
        if not match or int(match.group(1)) == os.getpid():
            continue
        try:
            if not path.is_dir() or path.is_symlink() or path.stat().st_uid != uid:
                continue
        except OSError:
            continue
        if not _alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
