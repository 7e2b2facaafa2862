"""Where edgequant keeps what is slow to rebuild (the arm64 root, instruction counts, QAT checkpoints, logs)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$EDGEQUANT_CACHE_DIR, else $XDG_CACHE_HOME/edgequant, else ~/.cache/edgequant."""
    if os.environ.get("EDGEQUANT_CACHE_DIR"):
        return Path(os.environ["EDGEQUANT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgequant"
