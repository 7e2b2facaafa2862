"""What emulated runs found, kept on disk: a rebuild whose models did not change emulates nothing.

Two kinds of entries, each a JSON file named by a hash of everything its result depends on:
- counts/: instructions per invoke (edgequant.devices.estimate.count_instructions writes them);
- parity/: an ARM parity check of a model on a core with given inputs, written here.
`edgequant devices cache` lists both and clears them.

An entry is checked before it is believed: it records the key it answers and a SHA-256 of that
key and its content. One that is unreadable, truncated, answers another key or fails its checksum
(edited, or written by an older edgequant) is ignored with one warning line and run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgequant.process.cache import cache_dir

KINDS = ("counts", "parity")
_SEAL = "edgequant_cache"  # the entry's own field: {"key": ..., "sha256": ...}; the record's fields sit beside it


def _digest(key: str, record: dict) -> str:
    canonical = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{key}\n{canonical}".encode()).hexdigest()


def read_entry(path: Path, key: str, check: Callable[[dict], str | None] | None = None) -> dict | None:
    """The record the entry at `path` holds for `key`; None if there is none or it fails a check.

    `check(record)` names what is implausible in a record, or returns None. A failing entry is
    reported in one line on stderr; the caller runs again and overwrites it.
    """
    if not path.is_file():
        return None
    problem = _entry_problem(path, key, check)
    if isinstance(problem, dict):
        return problem
    print(f"edgequant: warning: ignored the cached result {path} ({problem}); running it again", file=sys.stderr)
    return None


def _entry_problem(path: Path, key: str, check) -> dict | str:
    """The entry's record, or what is wrong with it."""
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        return f"unreadable: {type(exc).__name__}"
    seal = entry.pop(_SEAL, None) if isinstance(entry, dict) else None
    if not isinstance(seal, dict):
        return "no checksum: written by an older edgequant, or not by edgequant"
    if seal.get("key") != key:
        return f"it answers another key ({str(seal.get('key'))[:32]})"
    if seal.get("sha256") != _digest(key, entry):
        return "its content does not match its checksum"
    problem = check(entry) if check is not None else None
    return f"implausible: {problem}" if problem else entry


def write_entry(path: Path, key: str, record: dict) -> None:
    """Write `record` as the entry for `key`, sealed, through a temporary file renamed into place."""
    _write_atomically(path, {**record, _SEAL: {"key": key, "sha256": _digest(key, record)}})


@dataclass(frozen=True)
class Entry:
    kind: str
    path: Path
    size_bytes: int
    modified: float  # seconds since the epoch

    def summary(self) -> str:
        """What the entry holds, in a few words."""
        record = _entry_problem(self.path, self.path.stem, None)
        if not isinstance(record, dict):
            return f"{record} (it will be emulated again)"
        try:
            if self.kind == "counts":
                return f"{int(record['instructions']):,} instructions per invoke"
            return f"{record['profile']}: {record['summary']}"
        except (KeyError, TypeError, ValueError):
            return "incomplete (it will be emulated again)"


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


def counts_key(sha256: str, profile, kernels: str, litert: str) -> str:
    """The cache key of an emulated result: the model's bytes, the core, the kernels, LiteRT and the counting code."""
    # The code that does the counting is part of the key: a cache kept across versions (CI keeps ~/.cache)
    # must not answer with counts an older plugin, guest script or run set-up made.
    from edgequant.devices.arm import guest, runner
    from edgequant.devices.arm.install import GUEST_RUNNER, PLUGIN_SOURCE

    counting = hashlib.sha256()
    for source in (PLUGIN_SOURCE, GUEST_RUNNER, Path(runner.__file__), Path(guest.__file__)):
        counting.update(source.read_bytes())
    parts = [sha256, profile.qemu_cpu, f"{profile.cpu_implementer:x}-{profile.cpu_part:x}", kernels, litert,
             counting.hexdigest()[:12]]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def cached_parity(model_path: Path, profile, inputs, kernels: str = "xnnpack") -> dict:
    """`check_parity(...).to_dict()`, from the cache when this model, core, kernels and inputs were checked before."""
    from importlib import metadata

    from edgequant.devices.parity import check_parity
    from edgequant.devices.profiles import load_profile

    prof = load_profile(profile)
    what = hashlib.sha256(Path(model_path).read_bytes())
    for sample in inputs or ():  # None: check_parity's fixed pseudo-random samples
        for x in sample if isinstance(sample, (list, tuple)) else [sample]:
            what.update(f"{x.dtype}{x.shape}".encode())
            what.update(x.tobytes())
    what.update(_host_cpu_flags().encode())  # the host side runs x86 kernels chosen by these
    key = counts_key(what.hexdigest(), prof, kernels, metadata.version('ai-edge-litert'))
    cached = cache_dir() / "parity" / f"{key}.json"
    record = read_entry(cached, key)
    if record is not None:
        return record
    record = check_parity(model_path, prof, inputs, kernels=kernels).to_dict()
    write_entry(cached, key, record)
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
