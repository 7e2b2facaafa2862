"""What converting in a child process (edgequant.quantization.convert_worker) costs on the Fashion-MNIST recipe's five variants.

    nice python benchmarks/convert_worker_overhead.py [--repeats 2]

Each side runs in a fresh process, alternating: the model of recipes/fashion_mnist.yaml is exported once,
then its five variants (float32, float16, dynamic, int8, int16x8; 500 calibration images, as the recipe
says) are converted one after another, either in the process itself (convert.convert_variant, as builds
did before) or through one ConversionWorker (the child starts, imports TensorFlow, reads the SavedModel
once and converts the five, the samples sent from the parent). Timed from after the export to the last
bytes, in wall time and in CPU time (this process and the child: on a shared machine the CPU time is
the steadier figure). The summary is printed and written to docs/results/convert_worker_overhead.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_page import printed_results  # noqa: E402

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")


def side(name: str) -> None:
    from pydantic import TypeAdapter

    from edgequant.data.stream import iter_samples
    from edgequant.model.source_model import export_model
    from edgequant.quantization.convert import convert_variant
    from edgequant.quantization.convert_worker import ConversionWorker
    from edgequant.recipe.loader import load_recipe
    from edgequant.recipe.schema import Variant

    recipe = load_recipe(REPO / "recipes" / "fashion_mnist.yaml")
    with tempfile.TemporaryDirectory() as work:
        exported = export_model(recipe.model.path, Path(work))

        def representative():
            return (s.x for s in iter_samples(recipe.calibration, exported.input, limit=500, role="calibration"))

        variants = [TypeAdapter(Variant).validate_python({"name": m, "mode": m}) for m in MODES]
        started, cpu = time.perf_counter(), _cpu_seconds()
        sizes = []
        if name == "child":
            with ConversionWorker() as worker:
                for v in variants:
                    sizes.append(len(worker.convert(exported.saved_model_dir, v, representative)))
        else:
            for v in variants:
                sizes.append(len(convert_variant(exported.saved_model_dir, v, representative)))
        print(json.dumps({"seconds": time.perf_counter() - started, "cpu": _cpu_seconds() - cpu, "sizes": sizes}))


def _cpu_seconds() -> float:
    """CPU time of this process and of its ended children (the worker, once closed)."""
    import resource

    return sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--side", choices=["in-process", "child"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side)
        return
    times: dict[str, list[float]] = {"in-process": [], "child": []}
    cpu: dict[str, list[float]] = {"in-process": [], "child": []}
    sizes = {}
    for _ in range(args.repeats):
        for name in times:
            out = subprocess.run([sys.executable, __file__, "--side", name], capture_output=True, text=True, check=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            times[name].append(result["seconds"])
            cpu[name].append(result["cpu"])
            sizes[name] = result["sizes"]
    assert sizes["child"] == sizes["in-process"], sizes  # the same conversions
    import os

    load = os.getloadavg()[0]
    with printed_results("convert_worker_overhead"):
        print(f"Fashion-MNIST recipe, 5 variants ({', '.join(MODES)}), 500 calibration images; "
              f"{args.repeats} fresh processes per side, alternating; load average {load:.1f} at the end")
        for name, values in times.items():
            print(f"  {name:10s} wall min {min(values):6.2f} s (all: {', '.join(f'{v:.2f}' for v in values)}); "
                  f"CPU min {min(cpu[name]):6.2f} s (all: {', '.join(f'{v:.2f}' for v in cpu[name])})")
        print(f"  child - in-process (min): wall +{min(times['child']) - min(times['in-process']):.2f} s, "
              f"CPU +{min(cpu['child']) - min(cpu['in-process']):.2f} s: the child's TensorFlow import and its own "
              "reading of the SavedModel")


if __name__ == "__main__":
    main()
