"""What emulated runs found, kept on disk: a rebuild whose models did not change emulates nothing.

Two kinds of entries, each a JSON file named by a hash of everything its result depends on:
- counts/: instructions per invoke (edgequant.devices.estimate.count_instructions writes them);
- parity/: an ARM parity check of a model on a core with given inputs, written here.
`edgequant devices cache` lists both and clears them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgequant.cache import cache_dir

KINDS = ("counts", "parity")


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    size_bytes: int
    modified: float  # seconds since the epoch

    def summary(self) -> str:
        """What the entry holds, in a few words."""
        try:
            record = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return "unreadable (it will be emulated again)"
        if self.kind == "counts":
            return f"{record['instructions']:,} instructions per invoke"
        return f"{record['profile']}: {record['summary']}"


def entries() -> list[Entry]:
    """Every cached result, oldest first."""
    found = []
    for kind in KINDS:
        folder = cache_dir() / kind
        for path in folder.glob("*.json") if folder.is_dir() else ():
            stat = path.stat()
            found.append(Entry(kind, path, stat.st_size, stat.st_mtime))
    return sorted(found, key=lambda e: (e.modified, e.path.name))


def clear() -> list[Entry]:
    """Remove every cached result; the ones removed."""
    removed = entries()
    for entry in removed:
        entry.path.unlink(missing_ok=True)
    return removed


def cached_parity(model_path: Path, profile, inputs, kernels: str = "xnnpack") -> dict:
    """`check_parity(...).to_dict()`, from the cache when this model, core, kernels and inputs were checked before."""
    from importlib import metadata

    from edgequant.devices.estimate import _counts_key
    from edgequant.devices.parity import check_parity
    from edgequant.devices.profiles import load_profile

    prof = load_profile(profile)
    what = hashlib.sha256(Path(model_path).read_bytes())
    for sample in inputs or ():  # None: check_parity's fixed pseudo-random samples
        for x in sample if isinstance(sample, (list, tuple)) else [sample]:
            what.update(f"{x.dtype}{x.shape}".encode())
            what.update(x.tobytes())
    what.update(_host_cpu_flags().encode())  # the host side runs x86 kernels chosen by these
    cached = cache_dir() / "parity" / f"{_counts_key(what.hexdigest(), prof, kernels, metadata.version('ai-edge-litert'))}.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    record = check_parity(model_path, prof, inputs, kernels=kernels).to_dict()
    _write_atomically(cached, record)
    return record


def _host_cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("flags")), "")


def _write_atomically(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".entry.")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)
