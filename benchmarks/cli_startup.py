"""How long `edgequant --help` takes: the median of fresh processes (target: under 0.3 s).

    python benchmarks/cli_startup.py [--runs 10] [--against /path/to/another/checkout]

Each run is a new Python process, `python -m edgequant --help` (what the `edgequant` script runs), timed from
start to exit, Python's own start-up included. One untimed run first warms the file cache. With `--against`, the
same command runs from that checkout too, alternating with this one, so both see the same machine load (the
before/after of a change). Beside the wall time it prints the processes' CPU time (user + system), which a busy
machine inflates much less. The result is printed and written to docs/results/cli_startup.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET_S = 0.3


def help_seconds(checkout: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one fresh `python -m edgequant --help` from `checkout`. The CPU time (user + system)
    is what the process itself spent: on a busy machine the wall time also counts the waits for a core."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "edgequant", "--help"], env=env, check=True, stdout=subprocess.DEVNULL,
                   cwd=checkout)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--against", type=Path, help="another checkout of edgequant, timed alternately")
    args = parser.parse_args()
    checkouts = {"this checkout": REPO}
    if args.against:
        head = subprocess.run(["git", "-C", str(args.against), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True).stdout.strip() or "not a git checkout"
        checkouts[f"commit {head}"] = args.against.resolve()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
    for path in checkouts.values():
        help_seconds(path)  # warm the file cache
    for i in range(args.runs):
        for name, path in (list(checkouts.items()) if i % 2 == 0 else list(checkouts.items())[::-1]):
            times[name].append(help_seconds(path))
    sys.path.insert(0, str(REPO / "benchmarks"))
    from results_page import printed_results

    with printed_results("cli_startup"):
        print(f"`edgequant --help` (python -m edgequant --help), {args.runs} fresh processes each"
              + (", alternating" if args.against else "") + f"; load average {os.getloadavg()[0]:.1f}")
        for name, samples in times.items():
            wall = statistics.median(w for w, _ in samples)
            cpu = statistics.median(c for _, c in samples)
            verdict = "under" if wall < TARGET_S else "NOT under"
            print(f"  {name:30s} wall median {wall:.3f} s (min {min(w for w, _ in samples):.3f}): {verdict} the "
                  f"{TARGET_S} s target; CPU time median {cpu:.3f} s")
    return 0 if statistics.median(w for w, _ in times["this checkout"]) < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
