"""The build manifest, and atomic writes of single files.

The manifest lists every artifact of the build in the output directory. Each entry carries its own
provenance (the recipe, source model, preprocessing, labels and calibration data it was built from,
and when and by which edgequant), so a partial (`-v`) rebuild never relabels an artifact it kept.
How whole builds land in the output directory is `edgequant.output.output_dir`'s job.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
REPORT_JSON = "report.json"  # written by edgequant.report.render
MANIFEST_VERSION = 2  # 2: provenance per artifact; 1 recorded it once per build, at the top level


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` through a new temporary file in the same directory and an atomic rename.

    An existing `path` is never opened: a link there is replaced by the file, and whatever
    it led to is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide reports from other users
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_manifest(build_dir: Path) -> dict[str, Any] | None:
    path = Path(build_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def with_provenance(entry: dict, manifest: dict) -> dict:
    """`entry` of `manifest`, with the provenance a version-1 manifest recorded once for all its artifacts."""
    if manifest.get("manifest_version", 1) >= 2:
        return entry
    recipe = manifest.get("recipe") or {}
    return dict(entry, provenance={
        "built": manifest.get("created"),
        "edgequant_version": manifest.get("edgequant_version"),
        "tensorflow_version": manifest.get("tensorflow_version"),
        "recipe": {k: recipe.get(k) for k in ("name", "path", "sha256")},
        "source_model": manifest.get("source_model"),
        "preprocess": recipe.get("preprocess"),
        "labels": manifest.get("labels"),
        "calibration": "not recorded (manifest version 1)",
        "from_manifest_version": 1,  # copied from that manifest's top level, which a later -v build could rewrite
    })
