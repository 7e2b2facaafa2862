"""A 5-variant build of a MobileNetV2-sized model: `edgequant build` against one-by-one conversion.

    python benchmarks/build_speed.py [--repeats 2] [--samples 16]

Both sides build the same five variants (float32, float16, dynamic, int8, int16x8)
of keras.applications.MobileNetV2 (weights=None: the weights do not change the
work) with the same calibration samples (crops of scikit-image's bundled photos,
or seeded noise when scikit-image is absent). The baseline is what a script does
without edgequant: `TFLiteConverter.from_keras_model(model)` once per variant,
which traces and exports the model again every time. edgequant's extra stages
(host benchmark, per-layer int8 analysis) are turned off so both sides do the same
work: load, convert five times, write. Each side runs in a fresh
process, alternating, so both pay the same TensorFlow start-up and machine noise.
The summary is printed and written to docs/results/build_speed.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results_page import printed_results

MODES = ("float32", "float16", "dynamic", "int8", "int16x8")


def calibration_images(n: int):
    import numpy as np

    rng = np.random.default_rng(0)
    try:
        from skimage import data

        photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
        out = []
        for i in range(n):
            img = photos[i % len(photos)]
            y, x = rng.integers(0, img.shape[0] - 224), rng.integers(0, img.shape[1] - 224)
            out.append(img[y : y + 224, x : x + 224].astype("float32") / 127.5 - 1.0)
        return np.stack(out)
    except ImportError:
        return rng.uniform(-1, 1, (n, 224, 224, 3)).astype("float32")


def worker_edgequant(work: Path, samples: int) -> None:
    from edgequant.pipeline import build_recipe
    from edgequant.recipe.loader import load_recipe

    recipe = work / "recipe.yaml"
    recipe.write_text(
        "name: mnv2\nmodel: {path: mobilenet_v2.keras}\n"
        f"calibration: {{source: {{type: npy, path: calib.npy}}, samples: {samples}}}\n"
        "output_dir: out_edgequant\nbenchmark: {enabled: false}\nvariants:\n"
        + "".join(f"  - {{name: {m}, mode: {m}{', analyse_layers: false' if m == 'int8' else ''}}}\n" for m in MODES)
    )
    build_recipe(load_recipe(recipe))


def worker_baseline(work: Path, samples: int) -> None:
    import keras
    import numpy as np
    import tensorflow as tf

    model = keras.saving.load_model(work / "mobilenet_v2.keras", compile=False)
    calib = np.load(work / "calib.npy", allow_pickle=False)[:samples]
    out = work / "out_baseline"
    out.mkdir(exist_ok=True)
    for mode in MODES:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if mode != "float32":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode in ("int8", "int16x8"):
            converter.representative_dataset = lambda: ([x[None]] for x in calib)
        if mode == "int8":
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.int8
        if mode == "int16x8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            ]
        (out / f"{mode}.tflite").write_bytes(converter.convert())


def timed_run(side: str, work: Path, samples: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--worker", side, "--work", str(work), "--samples", str(samples)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--worker", choices=["edgequant", "baseline"])
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    if args.worker:
        (worker_edgequant if args.worker == "edgequant" else worker_baseline)(args.work, args.samples)
        return

    import keras
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        keras.applications.MobileNetV2(weights=None).save(work / "mobilenet_v2.keras")
        np.save(work / "calib.npy", calibration_images(args.samples))
        times: dict[str, list[float]] = {"edgequant": [], "baseline": []}
        for i in range(args.repeats):
            for side in ("edgequant", "baseline") if i % 2 == 0 else ("baseline", "edgequant"):
                times[side].append(timed_run(side, work, args.samples))
                print(f"run {i + 1} {side:9s} {times[side][-1]:7.1f} s", flush=True)
    best = {k: min(v) for k, v in times.items()}
    with printed_results("build_speed"):
        summary(args, best)
    print(json.dumps({"seconds": times, "speedup": best["baseline"] / best["edgequant"]}))


def summary(args, best: dict) -> None:
    print(f"5 variants of MobileNetV2 1.0 224 ({', '.join(MODES)}), {args.samples} calibration samples,")
    print(f"best of {args.repeats}, whole process each (TensorFlow import included):")
    print(f"  edgequant build (export once)        {best['edgequant']:7.1f} s")
    print(f"  TFLiteConverter per variant (Keras)  {best['baseline']:7.1f} s")
    print(f"  speed-up                             {best['baseline'] / best['edgequant']:7.2f}x  (target >= 2x)")


if __name__ == "__main__":
    main()
