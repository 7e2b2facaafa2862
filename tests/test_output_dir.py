"""The output directory: whole builds switched by one link, a lock, and a record per artifact.

Real builds that are killed and interrupted are in test_fault_injection.py; here the directory's
own rules are checked directly, and a real partial rebuild shows that no artifact is relabelled.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from edgequant.output.artifacts import MANIFEST, MANIFEST_VERSION
from edgequant.output.output_dir import OutputLockedError, Staging, current_build
from edgequant.process.interrupts import Terminated, stop_on_signals
from tests.conftest import FMNIST_MODEL


def commit(out: Path, files: dict[str, bytes]) -> None:
    with Staging(out) as staging:
        for name, data in files.items():
            staging.path(name).write_bytes(data)
        staging.commit()


def shown(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".") and p.is_file()}


def test_each_commit_switches_every_file_at_once_and_keeps_one_previous_build(tmp_path):
    out = tmp_path / "out"
    commit(out, {"a.tflite": b"A1", "report.md": b"R1"})
    first = current_build(out)
    commit(out, {"b.tflite": b"B2", "report.md": b"R2"})
    assert shown(out) == {"b.tflite": b"B2", "report.md": b"R2"}  # a.tflite went with its build
    assert all((out / n).is_symlink() for n in ("b.tflite", "report.md"))
    assert (out / ".edgequant" / "previous").resolve() == first  # kept for readers still on it
    commit(out, {"c.tflite": b"C3"})
    assert shown(out) == {"c.tflite": b"C3"}
    assert not first.exists() and len(list((out / ".edgequant" / "builds").iterdir())) == 2


def test_a_failed_build_changes_nothing_and_the_next_one_clears_up(tmp_path):
    out = tmp_path / "out"
    commit(out, {"a.tflite": b"A1"})
    with pytest.raises(RuntimeError), Staging(out) as staging:
        staging.path("a.tflite").write_bytes(b"A2")
        raise RuntimeError("a stage failed")
    assert shown(out) == {"a.tflite": b"A1"}
    assert [p.name for p in (out / ".edgequant" / "builds").iterdir()] == [current_build(out).name]


def test_a_swallowed_signal_stops_the_build_at_its_commit_and_one_after_it_changes_nothing(tmp_path):
    out = tmp_path / "out"
    commit(out, {"a.tflite": b"A1"})
    with pytest.raises(Terminated), stop_on_signals(), Staging(out) as staging:
        staging.path("a.tflite").write_bytes(b"A2")
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            pass  # swallowed, as TensorFlow's cleanup code does
        staging.commit()
    assert shown(out) == {"a.tflite": b"A1"}

    with stop_on_signals(), Staging(out) as staging:
        staging.path("a.tflite").write_bytes(b"A3")
        staging.commit()
        os.kill(os.getpid(), signal.SIGINT)  # the build has happened: noted, not raised
        time.sleep(0.1)
    assert shown(out) == {"a.tflite": b"A3"}


def test_a_second_build_is_refused_with_the_first_ones_pid_or_waits(tmp_path):
    out = tmp_path / "out"
    with Staging(out):
        with pytest.raises(OutputLockedError, match=rf"another build \(pid {os.getpid()}\) is writing this output"):
            Staging(out)
    holder = Staging(out)
    released = []
    threading.Thread(target=lambda: (time.sleep(0.5), released.append(1), holder.__exit__(None, None, None))).start()
    with Staging(out, wait=True):
        assert released  # got the lock only once the holder let go


def test_a_plain_directory_from_an_older_edgequant_is_adopted_byte_for_byte(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    old = {"m.tflite": b"M1", "report.json": b"{}", "notes.txt": b"mine"}
    for name, data in old.items():
        (out / name).write_bytes(data)
    (out / MANIFEST).write_text(json.dumps({"manifest_version": 1, "recipe": {"preprocess": {"scale": 0.5}}, "artifacts": [
        {"name": "m", "file": "m.tflite", "sha256": hashlib.sha256(b"M1").hexdigest()}]}))
    with Staging(out) as staging:  # a partial rebuild of another variant: m is carried over
        entries = staging.carry_over([{"name": "n", "file": "n.tflite"}])
        staging.path("n.tflite").write_bytes(b"N1")
        staging.path(MANIFEST).write_text(json.dumps({"manifest_version": MANIFEST_VERSION, "artifacts": entries}))
        staging.commit()
    assert shown(out)["m.tflite"] == b"M1" and shown(out)["n.tflite"] == b"N1"
    assert (out / "notes.txt").read_bytes() == b"mine" and not (out / "notes.txt").is_symlink()  # not ours
    kept = json.loads((out / MANIFEST).read_text())["artifacts"][0]
    assert kept["provenance"]["preprocess"] == {"scale": 0.5} and kept["provenance"]["from_manifest_version"] == 1
    adopted = (out / ".edgequant" / "previous").resolve()
    assert {p.name for p in adopted.iterdir()} == {"m.tflite", "report.json", MANIFEST}


@pytest.mark.slow
def test_a_partial_rebuild_never_relabels_the_artifacts_it_keeps(tmp_path):
    """-v after a preprocessing change: the kept artifact keeps its own record, and push reads that record."""
    from edgequant.android.app_manifest import read_build_manifest
    from edgequant.pipeline import build_recipe

    def recipe(scale: float) -> Path:
        path = tmp_path / f"r{scale}.yaml"
        path.write_text(f"""\
model: {{path: {FMNIST_MODEL}}}
calibration: {{source: {{type: fashion-mnist, split: train}}, preprocess: {{scale: {scale}}}, samples: 8}}
benchmark: {{enabled: false}}
output_dir: {tmp_path / 'out'}
variants:
  - {{name: float32, mode: float32}}
  - {{name: int8, mode: int8, analyse_layers: false}}
""")
        return path

    out = tmp_path / "out"
    build_recipe(recipe(1 / 255))
    before = {a["name"]: a for a in json.loads((out / MANIFEST).read_text())["artifacts"]}
    float32_bytes = (out / "float32.tflite").read_bytes()

    build_recipe(recipe(2 / 255), only=["int8"])
    after = {a["name"]: a for a in json.loads((out / MANIFEST).read_text())["artifacts"]}
    assert after["float32"] == before["float32"]  # the same record, word for word
    assert (out / "float32.tflite").read_bytes() == float32_bytes
    assert after["int8"]["provenance"]["preprocess"]["scale"] == pytest.approx(2 / 255)
    assert after["int8"]["provenance"]["recipe"]["sha256"] != after["float32"]["provenance"]["recipe"]["sha256"]
    assert os.path.samefile(out / "float32.tflite", (out / ".edgequant" / "previous" / "float32.tflite"))  # linked

    assert read_build_manifest(out / "float32.tflite").preprocess.scale == pytest.approx(1 / 255)
    assert read_build_manifest(out / "int8.tflite").preprocess.scale == pytest.approx(2 / 255)
