"""Parallel builds (`--jobs`), the cache of emulated results (`devices cache`) and multi-recipe builds.

Real builds of the Fashion-MNIST model with real qemu runs, each in a count cache of its own (the ARM
environment is shared through a symlink, so nothing is rebuilt): the first build emulates for real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgequant.process.parallel import _child_pids, run_all
from tests.conftest import FMNIST_MODEL, REPO
from tests.test_fault_injection import _children, _cmdline

HOME_CACHE = Path.home() / ".cache" / "edgequant"


def test_run_all_gives_results_in_order_whatever_finishes_first():
    pieces = [lambda d=d: (time.sleep(d), d)[1] for d in (0.3, 0.0, 0.1)]
    assert run_all(pieces, jobs=3) == [0.3, 0.0, 0.1]
    assert run_all(pieces, jobs=1) == [0.3, 0.0, 0.1]


def test_a_failed_piece_stops_the_others_and_kills_their_subprocesses():
    started = threading.Event()

    def sleeper():
        started.set()
        return subprocess.run(["sleep", "60"]).returncode

    def failing():
        started.wait(10)
        time.sleep(0.2)  # the sleepers' processes exist by now
        raise ValueError("bad piece")

    before = _child_pids()
    t0 = time.monotonic()
    with pytest.raises(ValueError, match="bad piece"):
        run_all([sleeper, failing, sleeper, sleeper], jobs=2)
    assert time.monotonic() - t0 < 30  # not the 60 s the sleepers would take
    assert _child_pids() - before == set()  # killed and reaped, none left


def new_cache(folder: Path) -> Path:
    """An empty cache of emulated results in `folder`, with the machine's ARM environment."""
    if not (HOME_CACHE / "arm64" / "state.json").is_file():
        pytest.skip("no ARM emulation environment: run `edgequant devices setup`")
    folder.mkdir()
    (folder / "arm64").symlink_to(HOME_CACHE / "arm64")
    return folder


@pytest.fixture
def cold_cache(tmp_path, monkeypatch):
    cache = new_cache(tmp_path / "cache")
    monkeypatch.setenv("EDGEQUANT_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def emulations(monkeypatch):
    """Counts every qemu run (estimates and parity checks), running each for real."""
    from edgequant.devices import parity
    from edgequant.devices.arm import runner

    calls = []
    real = runner.run_on_device

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_on_device", counted)
    monkeypatch.setattr(parity, "run_on_device", counted)
    return calls


def write_recipe(folder: Path, name: str = "tiny", max_latency_ms: float = 50.0) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""\
name: {name}
output_dir: {folder / "build" / name}
model: {{path: {FMNIST_MODEL}}}
calibration:
  source: {{type: fashion-mnist, split: train}}
  preprocess: {{scale: 0.00392156862745098}}
  samples: 100
evaluation:
  source: {{type: fashion-mnist, split: test}}
  samples: 500
benchmark: {{enabled: false}}
devices: [rpi4, pixel4]
variants:
  - {{name: float32, mode: float32}}
  - {{name: dynamic, mode: dynamic}}
  - name: int8
    mode: int8
    analyse_layers: false
    gates: {{max_latency_ms: {{rpi4: {max_latency_ms}}}}}
""")
    return path


def comparable_report(out: Path) -> dict:
    """report.json without what differs between any two builds: the time, times taken, the recipe path."""
    report = json.loads((out / "report.json").read_text())
    report.pop("created")
    report["recipe"].pop("path")
    for v in report["variants"]:
        v.pop("convert_seconds")
        v["evaluation"].pop("throughput")
    return report


def comparable_manifest(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("created")
    manifest["recipe"].pop("path")
    for a in manifest["artifacts"]:
        a["provenance"].pop("built")
        a["provenance"]["recipe"].pop("path")
    return manifest


@pytest.mark.slow
def test_jobs_change_nothing_built(emulations, tmp_path, monkeypatch):
    """Both builds emulate for real, each in a cold cache: 2 at a time, and one after another."""
    from edgequant.pipeline import build_recipe

    recipe = write_recipe(tmp_path)
    for jobs in (2, 1):
        monkeypatch.setenv("EDGEQUANT_CACHE_DIR", str(new_cache(tmp_path / f"cache-j{jobs}")))
        emulations.clear()
        built = build_recipe(recipe, output_dir=tmp_path / f"j{jobs}", jobs=jobs)
        assert len(emulations) == 2 * (3 + 1)  # 3 estimates and 1 parity check on each of 2 devices
    for a in built.artifacts:
        assert (tmp_path / "j2" / a.file).read_bytes() == (tmp_path / "j1" / a.file).read_bytes()
    assert comparable_report(tmp_path / "j2") == comparable_report(tmp_path / "j1")
    assert comparable_manifest(tmp_path / "j2") == comparable_manifest(tmp_path / "j1")


@pytest.mark.slow
def test_several_recipes_share_the_export_and_the_emulation_and_exit_with_the_worst_code(
    cold_cache, emulations, tmp_path, monkeypatch, capsys
):
    """The second recipe differs from the first only by a gate: nothing is emulated again for it."""
    from edgequant.cli import main
    from edgequant.quantization.convert_worker import ConversionWorker

    exports = []  # every export the builds ask for (the conversions' child exports Keras files)
    real_export = ConversionWorker.export
    monkeypatch.setattr(ConversionWorker, "export",
                        lambda self, *a, **k: exports.append(a[0]) or real_export(self, *a, **k))
    first = write_recipe(tmp_path, "first")
    strict = write_recipe(tmp_path, "strict", max_latency_ms=0.001)
    broken = tmp_path / "broken.yaml"
    broken.write_text(first.read_text().replace("name: first", "name: broken").replace("samples: 500", "samples: -1"))
    code = main(["build", str(first), str(strict), str(broken), "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 2, err  # the worst: bad input in broken.yaml, after a gate failed in strict.yaml
    assert "edgequant: gate failed: int8: max_latency_ms.rpi4 FAILED" in err
    assert f"edgequant: error: {broken}:" in err
    assert exports == [FMNIST_MODEL]  # once, for both recipes that got that far
    assert len(emulations) == 2 * (3 + 1)  # all for the first recipe
    reports = [json.loads((tmp_path / "build" / name / "report.json").read_text()) for name in ("first", "strict")]
    assert [r["passed"] for r in reports] == [True, False]
    assert [v["latency"] for v in reports[0]["variants"]] == [v["latency"] for v in reports[1]["variants"]]


def test_devices_cache_lists_and_clears(cold_cache, tmp_path):
    from edgequant.cli import main
    from edgequant.devices.run_cache import write_entry

    write_entry(cold_cache / "counts" / "a1.json", "a1", {"instructions": 592001, "mix": {}, "kernel_shares": []})
    write_entry(cold_cache / "parity" / "b2.json", "b2", {"profile": "rpi4", "summary": "bit-exact"})
    listing = subprocess.run([sys.executable, "-m", "edgequant", "devices", "cache"], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert listing.returncode == 0, listing.stderr
    assert "holds 2 results (1 counts, 1 parity)" in listing.stdout
    assert "592,001 instructions per invoke" in listing.stdout and "rpi4: bit-exact" in listing.stdout
    assert main(["devices", "cache", "--clear"]) == 0
    assert not list(cold_cache.glob("counts/*")) and not list(cold_cache.glob("parity/*"))
    assert (cold_cache / "arm64").exists()  # the ARM environment is not a cached result


@pytest.mark.slow
def test_sigint_during_parallel_emulation_ends_every_qemu_and_keeps_the_earlier_build(cold_cache, tmp_path):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    command = [sys.executable, "-m", "edgequant", "build", str(recipe), "-o", str(out), "--jobs", "2"]
    first = subprocess.run(command + ["--no-devices"], capture_output=True, text=True, env=env)
    assert first.returncode == 1, first.stderr  # the latency gate is not measured without devices
    earlier = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even from a background job
    deadline = time.monotonic() + 300
    while len(qemu := _qemu_children(proc.pid)) < 2:  # two emulated runs at once
        assert proc.poll() is None and time.monotonic() < deadline, "the build never ran two qemu at once"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "edgequant: interrupted"
    assert not any(Path(f"/proc/{pid}").exists() for pid in qemu)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == earlier


def _qemu_children(pid: int) -> list[int]:
    return [child for child in _children(pid) if "qemu-aarch64" in _cmdline(child)]


def test_ray_without_its_extra_is_one_line_and_exit_2(monkeypatch):
    from edgequant.errors import ToolMissingError
    from edgequant.process.ray_backend import run_on_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where the extra is not installed
    with pytest.raises(ToolMissingError, match=r"pip install 'edgequant\[ray\]'") as caught:
        run_on_ray([], "auto")
    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
