"""Device estimates of 5 variants on 2 simulated devices: `--jobs 2` against `--jobs 1`, and a rebuild
after a gate change (served from the cache of emulated results).

    python benchmarks/device_speed.py [--repeats 1]

The recipe is recipes/fashion_mnist.yaml (5 variants; rpi4 and pixel4; int8 parity checked on both)
with the host benchmark off. Every serial or parallel build starts from an empty cache of emulated
results (the ARM environment itself is shared through a symlink), so both sides emulate all
2 x (5 estimates + 1 parity check) runs; the two sides alternate in one process. The figure is
the wall time of the device stage (first emulation started to last one finished), read from the
build's own progress tasks; whole-build times are printed beside it. Estimates are counted
instructions turned into milliseconds: the figures here time the emulation, not a device.
The summary is printed and written to docs/results/device_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from results_page import printed_results

from edgequant.process.cache import cache_dir
from edgequant.process.progress import NullProgress

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "fashion_mnist.yaml"


class StageClock(NullProgress):
    """Records when each progress task starts and ends."""

    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []

    @contextmanager
    def task(self, description: str, total: int | None = None):
        started = time.perf_counter()
        with super().task(description, total) as task:
            yield task
        self.spans.append((description, started, time.perf_counter()))

    def seconds(self, prefix: str) -> float:
        spans = [(s, e) for d, s, e in self.spans if d.startswith(prefix)]
        return max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0


def counted_emulations() -> list:
    """Counts every qemu run from here on (the runs themselves are real)."""
    from edgequant.devices import parity
    from edgequant.devices.arm import runner

    calls, real = [], runner.run_on_device

    def counted(*args, **kwargs):
        calls.append(args[0])
        return real(*args, **kwargs)

    runner.run_on_device = parity.run_on_device = counted
    return calls


def build(recipe: Path, out: Path, jobs: int) -> tuple[float, float]:
    from edgequant.pipeline import build_recipe

    clock, started = StageClock(), time.perf_counter()
    build_recipe(recipe, output_dir=out, progress=clock, jobs=jobs, host_benchmark=False)
    return clock.seconds("emulate on "), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    arm = cache_dir() / "arm64"
    if not (arm / "state.json").is_file():
        raise SystemExit("no ARM environment: run `edgequant devices setup` first")
    emulations = counted_emulations()
    print(f"load before: {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        times: dict[str, list[tuple[float, float]]] = {"jobs 1": [], "jobs 2": []}
        for i in range(args.repeats):
            for jobs in (1, 2) if i % 2 == 0 else (2, 1):
                cache = work / f"cache-{i}-{jobs}"
                cache.mkdir()
                (cache / "arm64").symlink_to(arm)
                os.environ["EDGEQUANT_CACHE_DIR"] = str(cache)
                emulations.clear()
                times[f"jobs {jobs}"].append(build(RECIPE, work / f"out-{jobs}", jobs))
                device, whole = times[f"jobs {jobs}"][-1]
                print(f"run {i + 1} --jobs {jobs}: device stage {device:6.1f} s, build {whole:6.1f} s, "
                      f"{len(emulations)} emulated runs", flush=True)
        gated = work / "gate.yaml"
        text = RECIPE.read_text().replace("max_latency_ms: {rpi4: 2.0}", "max_latency_ms: {rpi4: 1.5}")
        gated.write_text(text.replace("path: fashion_mnist/", f"path: {RECIPE.parent}/fashion_mnist/"))
        emulations.clear()
        rebuild_device, rebuild_whole = build(gated, work / "out-2", 2)
        rebuild_runs = len(emulations)
    serial = min(d for d, _ in times["jobs 1"])
    parallel = min(d for d, _ in times["jobs 2"])
    with printed_results("device_speed"):
        print(f"fashion_mnist: 5 variants x rpi4, pixel4 (10 estimates + 2 int8 parity checks), cold count cache, "
              f"best of {args.repeats}; this machine: {os.cpu_count()} cores, load after: {os.getloadavg()}")
        print(f"  device stage, --jobs 1         {serial:7.1f} s")
        print(f"  device stage, --jobs 2         {parallel:7.1f} s")
        print(f"  speed-up                       {serial / parallel:7.2f}x  (target >= 1.7x)")
        print(f"  rebuild after a gate change    {rebuild_device:7.1f} s device stage, {rebuild_whole:.1f} s build, "
              f"{rebuild_runs} emulated runs")
    print(json.dumps({"seconds": times, "speedup": serial / parallel, "rebuild_device_seconds": rebuild_device,
                      "rebuild_emulated_runs": rebuild_runs}))


if __name__ == "__main__":
    main()
