"""A poisoned count cache costs a recount, never a wrong estimate or a crash (issue 24 item 5).

A real model is counted once under qemu into a cache of its own; then its entry is truncated,
replaced by garbage, made to answer another key, or given an instruction mix 1,000 times larger
(with its old checksum, and resealed). Each time `devices estimate` and `devices cache` exit 0,
say in one line which entry they ignored, the model is counted again, and the estimate equals
the cold one.
"""

from __future__ import annotations

import json
import os

import pytest

from edgequant.devices.run_cache import _SEAL, write_entry
from tests.conftest import REPO
from tests.test_parallel import cold_cache, emulations  # noqa: F401 - fixtures

MODEL = REPO / "tests" / "fuzz_corpus" / "tflite" / "float32.tflite"  # a few kB: counted in seconds


def scaled(entry: dict, reseal: bool) -> bytes:
    record = {k: v for k, v in entry.items() if k != _SEAL}
    record["mix"] = {k: v * 1000 for k, v in record["mix"].items()}
    if not reseal:
        return json.dumps({**record, _SEAL: entry[_SEAL]}).encode()
    return json.dumps({**record, _SEAL: {"key": entry[_SEAL]["key"], "sha256": _reseal(entry[_SEAL]["key"], record)}}
                      ).encode()


def _reseal(key: str, record: dict) -> str:
    from edgequant.devices.run_cache import _digest

    return _digest(key, record)


def other_key(entry: dict) -> bytes:
    """A whole, correctly sealed entry, but for another model: what a copied or renamed file would hold."""
    record = {k: v for k, v in entry.items() if k != _SEAL}
    return json.dumps({**record, _SEAL: {"key": "0" * 32, "sha256": _reseal("0" * 32, record)}}).encode()


POISONS = {
    "truncated": lambda raw, entry: raw[: len(raw) // 2],
    "garbage": lambda raw, entry: os.urandom(300),
    "empty": lambda raw, entry: b"",
    "not an object": lambda raw, entry: b"[1, 2, 3]",
    "no checksum": lambda raw, entry: json.dumps({k: v for k, v in entry.items() if k != _SEAL}).encode(),
    "wrong key": lambda raw, entry: other_key(entry),
    "scaled mix, old checksum": lambda raw, entry: scaled(entry, reseal=False),
    "scaled mix, resealed": lambda raw, entry: scaled(entry, reseal=True),
}
MESSAGES = {
    "truncated": "unreadable", "garbage": "unreadable", "empty": "unreadable", "not an object": "no checksum",
    "no checksum": "no checksum", "wrong key": "it answers another key",
    "scaled mix, old checksum": "does not match its checksum",
    "scaled mix, resealed": "implausible: its instruction mix adds up to",
}


COUNTED_AGAIN = ["truncated", "garbage", "wrong key", "scaled mix, resealed"]  # each costs a qemu run


@pytest.mark.slow
def test_poisoned_count_entries_are_ignored_and_counted_again(cold_cache, emulations, capsys):  # noqa: F811
    argv = ["devices", "estimate", MODEL, "-d", "rpi4", "--json"]
    cold = _last_json(capsys, argv)
    [entry_path] = list((cold_cache / "counts").glob("*.json"))
    good = entry_path.read_bytes()
    counted = len(emulations)
    for name in COUNTED_AGAIN:
        poison = POISONS[name]
        entry_path.write_bytes(poison(good, json.loads(good)))
        code = _cache_listing(capsys)
        assert code == 0, name
        estimate = _last_json(capsys, argv, expect_warning=f"{entry_path} ({MESSAGES[name]}")
        assert estimate == cold, name
        counted += 1
        assert len(emulations) == counted, f"{name}: not counted again"
        assert json.loads(entry_path.read_bytes())[_SEAL]["key"] == entry_path.stem  # rewritten, sealed
    _last_json(capsys, argv)
    assert len(emulations) == counted  # a good entry is believed: no count


@pytest.mark.parametrize("name", sorted(POISONS))
def test_every_poisoned_entry_is_refused_with_its_reason(tmp_path, capsys, name):
    """The same checks without qemu, for every kind of damage: read_entry returns nothing and says why."""
    from edgequant.devices.estimate import count_problem
    from edgequant.devices.run_cache import read_entry

    key = "ad20fbc211807a051e2559e3d9291cdc"
    path = tmp_path / f"{key}.json"
    record = {"instructions": 600, "mix": {"fp_mac": 300, "load": 200, "scalar": 100, "load_bytes": 4000},
              "kernel_shares": [], "layers": []}
    write_entry(path, key, record)
    assert read_entry(path, key, count_problem) == record
    good = path.read_bytes()
    path.write_bytes(POISONS[name](good, json.loads(good)))
    assert read_entry(path, key, count_problem) is None
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("edgequant: warning: ignored the cached result") and MESSAGES[name] in line


def _cache_listing(capsys) -> int:
    from edgequant.cli import main

    code = main(["devices", "cache"])
    capsys.readouterr()
    return code


def _last_json(capsys, argv, expect_warning: str | None = None):
    from edgequant.cli import main

    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err, captured.err
    warnings = [line for line in captured.err.splitlines() if line.startswith("edgequant: warning: ")]
    if expect_warning is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and expect_warning in warnings[0], warnings
    result = json.loads(captured.out)
    for r in result if isinstance(result, list) else [result]:
        r.pop("counted_seconds", None)
    return result
