"""Where ≤4-bit weights pay: float32, int8, dynamic int8, int4 and ternary on a dense-heavy MLP, in one run.

    python benchmarks/lowbit.py                 # trains the MLP (~15 min on 2 busy cores), builds, writes the table
    python benchmarks/lowbit.py --epochs 1 --qat-epochs 1 --no-write    # a quicker look, nothing written

The model is fixed before any result: Fashion-MNIST 28x28 -> Flatten -> Dense(1280, relu) x 3 -> Dense(10),
three dense layers of 1.0M, 1.6M and 1.6M weights (17 MB as float32), trained here (seeded) on the 60,000
training images. Every variant is built by `edgequant.pipeline.build_recipe` from one recipe, so each row
gets edgequant's own numbers: the file size, top-1 on the 10,000 test images, the host latency through
XNNPACK (1 thread, interleaved runs, median) and the estimated latency on the simulated rpi4 (Cortex-A72)
and pixel4 (Cortex-A76) with their intervals. The table goes to docs/results/lowbit.md with the date, the
commit and the machine, and a line per device saying whether INT2 (ternary) beats int8 there.

    python benchmarks/lowbit.py --cnn           # the shipped Fashion-MNIST CNN: recipes/fashion_mnist_lowbit.yaml
    python benchmarks/lowbit.py --cnn --from-build DIR    # the same table from a build of that recipe in DIR

--cnn builds recipes/fashion_mnist_lowbit.yaml (float32, int8, int4, INT4 QAT, ternary, binary) and adds
post-training INT2 (the float32 weights packed as INT2 dense + INT8 conv, untrained: what the recipe schema
refuses by default), all on the 10,000 test images; the table goes to docs/results/lowbit-cnn.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results" / "lowbit.md"
CNN_RESULTS = REPO / "docs" / "results" / "lowbit-cnn.md"
CNN_RECIPE = REPO / "recipes" / "fashion_mnist_lowbit.yaml"
WIDTHS = (1280, 1280, 1280)  # fixed before any result was seen (1.0M, 1.6M and 1.6M weights)
SCALE = 1 / 255
TRAIN = {"source": {"type": "fashion-mnist", "split": "train"}, "preprocess": {"scale": SCALE}}
TEST = {"source": {"type": "fashion-mnist", "split": "test"}, "preprocess": {"scale": SCALE}, "batch_size": 500}
DEVICES = ("rpi4", "pixel4")


def train_mlp(path: Path, epochs: int) -> float:
    import keras

    from edgequant.data.idx import load_fashion_mnist

    keras.utils.set_random_seed(0)
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    model = keras.Sequential([keras.Input((28, 28, 1), name="image"), keras.layers.Flatten()]
                             + [keras.layers.Dense(w, activation="relu") for w in WIDTHS]
                             + [keras.layers.Dense(10, activation="softmax")], name="mlp_dense_heavy")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=128, epochs=epochs, verbose=2)
    model.save(path)
    return float(model.evaluate(xt, yt, verbose=0)[1])


def recipe_for(model: Path, out: Path, qat_epochs: int):
    from edgequant.recipe.schema import Recipe

    return Recipe.model_validate({
        "name": "lowbit_mlp", "model": {"path": str(model)}, "output_dir": str(out),
        "calibration": dict(TRAIN, samples=500), "evaluation": TEST,
        "benchmark": {"threads": 1, "runs": 50, "warmup": 5}, "devices": list(DEVICES),
        "variants": [
            {"name": "float32", "mode": "float32"},
            {"name": "int8", "mode": "int8", "input_type": "float32", "output_type": "float32", "analyse_layers": False},
            {"name": "dynamic", "mode": "dynamic"},
            {"name": "int4", "mode": "int4"},
            {"name": "ternary", "mode": "ternary", "training": TRAIN, "epochs": qat_epochs, "learning_rate": 1e-4},
        ],
    })


def _latency(variant, device: str):
    return next((x for x in variant.latency if x.device == device), None)


def table(report) -> list[str]:
    head = "| variant | mode | size | vs float32 | top-1 | host XNNPACK (ms) | " + " | ".join(
        f"{d} est. (ms) [interval]" for d in DEVICES) + " |"
    lines = [head, "|" + "---|" * (6 + len(DEVICES))]
    for v in report.variants:
        host = _latency(v, "host")
        cells = [v.name, v.mode, f"{v.size_bytes:,} B", f"{100 * (v.size_vs_reference or 0):.1f}%",
                 f"{100 * v.evaluation.top1:.2f}%" if v.evaluation and v.evaluation.top1 is not None else "-",
                 f"{host.ms:.3f}" if host else "-"]
        for d in DEVICES:
            est = _latency(v, d)
            cells.append(f"{est.ms:.2f} [{est.interval_ms[0]:.2f}-{est.interval_ms[1]:.2f}]" if est else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def verdicts(report) -> list[str]:
    """Per device: is ternary (INT2 dense) faster than int8 and dynamic int8, beyond the estimate's interval?"""
    by = {v.name: v for v in report.variants}
    out = []
    for device in ("host", *DEVICES):
        t = _latency(by["ternary"], device)
        for other in ("int8", "dynamic", "float32"):
            o = _latency(by[other], device) if other in by else None
            if t is None or o is None:
                continue
            if device == "host":
                word = "faster" if t.ms < 0.9 * o.ms else "NOT faster" if t.ms > o.ms else "not clearly faster"
                out.append(f"- host (measured): ternary {t.ms:.3f} ms vs {other} {o.ms:.3f} ms: {word} "
                           f"({o.ms / t.ms:.2f}x)")
            else:
                apart = t.interval_ms[1] < o.interval_ms[0] or o.interval_ms[1] < t.interval_ms[0]
                word = ("faster" if t.ms < o.ms else "NOT faster") if apart else (
                    "within the estimates' intervals of")
                out.append(f"- {device} (estimate): ternary {t.ms:.2f} ms [{t.interval_ms[0]:.2f}-{t.interval_ms[1]:.2f}] "
                           f"vs {other} {o.ms:.2f} ms [{o.interval_ms[0]:.2f}-{o.interval_ms[1]:.2f}]: {word}"
                           + (f" ({o.ms / t.ms:.2f}x)" if apart else f" {other}"))
    return out


def header(title: str, command: str, report) -> list[str]:
    from edgequant.bench.cpu_features import read_host_features

    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    host = read_host_features()
    return [f"# {title}", "",
            f"Written by `{command}` on {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {commit}; "
            f"build of {report.created} (edgequant {report.edgequant_version}); host {host.cpu or platform.machine()} "
            f"({os.cpu_count()} cores, shared: host latencies are medians of interleaved runs, this machine only).", ""]


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    print(f"wrote {path}")


def post_training_int2(float32: Path) -> tuple[int, float]:
    """(size, top-1 on the 10,000 test images) of the untrained float32 weights packed as INT2 dense + INT8 conv."""
    from edgequant.data.idx import load_fashion_mnist
    from edgequant.lowbit.pack import PackPlan, pack
    from edgequant.lowbit.readback import check_packed
    from edgequant.measure.evaluate import evaluate

    plan = PackPlan(dense_bits=2, conv_bits=8)
    packed = pack(float32.read_bytes(), plan, label="post-training INT2")
    check_packed(packed, plan, label="post-training INT2")
    x, y = load_fashion_mnist("test")
    batches = [(x[i:i + 1000], y[i:i + 1000]) for i in range(0, len(x), 1000)]
    return len(packed), evaluate({"m": packed}, batches, reference="m")["m"].top1


def cnn(from_build: Path | None, write_file: bool) -> int:
    from edgequant.pipeline import build_recipe
    from edgequant.report.schema import Report

    with tempfile.TemporaryDirectory(prefix="edgequant-lowbit-cnn-") as work:
        out = from_build or Path(work) / "out"
        if from_build is None:
            build_recipe(CNN_RECIPE, output_dir=out)
        report = Report.model_validate_json((out / "report.json").read_text())
        size, top1 = post_training_int2(out / "float32.tflite")
    reference = next(v for v in report.variants if v.name == "float32")
    command = "python benchmarks/lowbit.py --cnn" + (" --from-build DIR" if from_build else "")
    lines = [
        *header("≤4-bit weights on the shipped Fashion-MNIST CNN", command, report),
        f"Recipe: {CNN_RECIPE.relative_to(REPO)} (the model of recipes/fashion_mnist/train.py); top-1 on the 10,000 "
        "test images. Device figures are estimates from instruction counts of the real ARM kernels under qemu, with "
        "the profile's calibration interval.", "",
        *table(report), "",
        f"Post-training INT2 (the float32 weights packed as INT2 dense + INT8 conv without training, refused by "
        f"default): {size:,} B, top-1 {100 * top1:.2f}% against float32's {100 * reference.evaluation.top1:.2f}%.", "",
        "ARM parity (outputs on the emulated cores against x86, 8 test images):", "",
        *[f"- {v.name} on {p['device']}: {p['summary']}" for v in report.variants for p in v.arm_parity], "",
        "Where INT2 (ternary) is faster than int8:", "", *verdicts(report), "",
    ]
    text = "\n".join(lines)
    print(text)
    if write_file:
        write(CNN_RESULTS, text)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=1, help="ternary QAT epochs")
    parser.add_argument("--cnn", action="store_true", help="the shipped Fashion-MNIST CNN instead of the MLP")
    parser.add_argument("--from-build", type=Path, help="with --cnn: a build of its recipe to read the figures from")
    parser.add_argument("--no-write", action="store_true", help="print only; do not write under docs/results/")
    args = parser.parse_args()
    if args.cnn:
        return cnn(args.from_build, not args.no_write)

    from edgequant.pipeline import build_recipe

    with tempfile.TemporaryDirectory(prefix="edgequant-lowbit-bench-") as work:
        model = Path(work) / "mlp.keras"
        keras_top1 = train_mlp(model, args.epochs)
        print(f"trained {model.name}: Keras top-1 {keras_top1:.4f} on the 10,000 test images", flush=True)
        result = build_recipe(recipe_for(model, Path(work) / "out", args.qat_epochs))
    report = result.report
    command = f"python benchmarks/lowbit.py --epochs {args.epochs} --qat-epochs {args.qat_epochs}"
    lines = [
        *header("≤4-bit weights on a dense-heavy MLP", command, report),
        f"Model: Fashion-MNIST 28x28 -> Flatten -> Dense({', '.join(map(str, WIDTHS))}, relu) -> Dense(10); "
        f"float training {args.epochs} epoch(s), ternary QAT {args.qat_epochs} epoch(s) on the 60,000 training images; "
        "top-1 on the 10,000 test images. Device figures are estimates from instruction counts of the real ARM "
        "kernels under qemu, with the profile's calibration interval.", "",
        *table(report), "",
        "Where INT2 (ternary: INT2 dense weights, activations quantized to int8 at run time) is faster:", "",
        *verdicts(report), "",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write(RESULTS, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
