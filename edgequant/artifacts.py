"""The output directory: staged writes that land all at once, and the manifest.

A build writes into a staging folder inside the output directory and moves each
file into place with an atomic rename only when the whole build has succeeded, so
an interrupted or failed build leaves the earlier artifacts as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgequant.errors import InputError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` through a temporary file in the same directory and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp creates 0600; the file must read like any other the build writes
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class Staging:
    """A staging folder inside `output_dir`; `commit()` moves its files into place, manifest last."""

    def __init__(self, output_dir: Path):
        self.output_dir = Path(output_dir)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(dir=self.output_dir, prefix=".staging-"))

    def path(self, name: str) -> Path:
        """Where to write `name` (relative, may include subfolders) before commit."""
        target = (self.dir / name).resolve()
        if not target.is_relative_to(self.dir.resolve()):
            raise InputError(f"{name!r}: output file names must stay inside {self.output_dir}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self) -> list[Path]:
        files = sorted(p for p in self.dir.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name == MANIFEST)  # the manifest lands last: it vouches for the rest
        landed = []
        for src in files:
            dest = self.output_dir / src.relative_to(self.dir)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            landed.append(dest)
        self.discard()
        return landed

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, exc_type, *_):
        self.discard()  # after commit() the folder is already gone; on error nothing lands


def read_manifest(output_dir: Path) -> dict[str, Any] | None:
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def merge_artifacts(previous: dict[str, Any] | None, built: list[dict], output_dir: Path) -> list[dict]:
    """This build's artifact entries, plus earlier ones for variants it did not rebuild and whose files remain."""
    names = {a["name"] for a in built}
    kept = [
        a
        for a in (previous or {}).get("artifacts", [])
        if a.get("name") not in names and (Path(output_dir) / a.get("file", "")).is_file()
    ]
    return kept + built
