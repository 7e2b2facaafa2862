"""How much of post-training int8's accuracy loss QAT wins back, measured in one run.

    python benchmarks/qat_recovery.py                  # both example recipes, ~4 min on 2 cores
    python benchmarks/qat_recovery.py --recipe recipes/wide_range_qat.yaml

Each recipe (float32, post-training int8 and a qat variant) is built for real with
`edgequant.pipeline.build_recipe`. A control row separates what QAT gains from simply
training longer: the float model fine-tuned for the same epochs, learning rate and batch size
without fake quantization, then post-training int8 ("+ft" rows). Every artifact is run by the LiteRT interpreter
(XNNPACK, one image per invoke) on the 10,000 Fashion-MNIST test images. The table gives
top-1 accuracy, the drop from float32, the file size and whether the file is full-integer
(read back from the .tflite: every operator on int8/int32 tensors, int8 model input and output).
The table is printed and written to docs/results/qat_recovery.md, which the QAT guide includes.
Exit status 1 when QAT recovers less than --min-recovery of the post-training loss on a
model where post-training int8 lost at least a point.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from results_page import write_results

from edgequant.data.idx import load_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
RECIPES = [REPO / "recipes" / "fashion_mnist_qat.yaml", REPO / "recipes" / "wide_range_qat.yaml"]


@dataclass
class Row:
    recipe: str
    variant: str
    mode: str
    top1: float
    size_bytes: int
    full_integer: bool
    io_dtypes: str


def top1(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy through the LiteRT interpreter, with edgequant's own evaluation."""
    from edgequant.measure.evaluate import evaluate

    batches = [(x[i : i + 1000], y[i : i + 1000]) for i in range(0, len(x), 1000)]
    return evaluate({"model": path}, batches, reference="model")["model"].top1


def measure(recipe_path: Path, x, y, out_dir: Path) -> list[Row]:
    from edgequant.pipeline import build_recipe
    from edgequant.recipe.loader import load_recipe

    recipe = load_recipe(recipe_path)
    result = build_recipe(recipe, output_dir=out_dir / recipe_path.stem)
    rows = [_row(recipe_path.stem, a.name, a.mode, result.path(a.name), x, y) for a in result.artifacts]

    qat = next((v for v in recipe.variants if v.mode == "qat"), None)
    ptq = [v for v in recipe.variants if v.mode == "int8"]
    if qat is not None and ptq:
        tuned = _fine_tune_float(recipe, qat, out_dir / f"{recipe_path.stem}_ft.keras")
        control = recipe.model_copy(update={"model": recipe.model.model_copy(update={"path": tuned}),
                                            "variants": ptq, "evaluation": None})
        result = build_recipe(control, output_dir=out_dir / f"{recipe_path.stem}_ft")
        rows += [_row(recipe_path.stem, f"{a.name}+ft", "int8+ft", result.path(a.name), x, y)
                 for a in result.artifacts]
    return rows


def _row(recipe: str, name: str, mode: str, path: Path, x, y) -> Row:
    from edgequant.model.tflite_file import read_tflite
    from edgequant.qat import float_operators

    model = read_tflite(path)
    integer = (mode.startswith(("int8", "qat")) and not float_operators(model)
               and {t.dtype for t in (*model.inputs, *model.outputs)} <= {"int8", "uint8"})
    io = f"{model.inputs[0].dtype}->{model.outputs[0].dtype}"
    return Row(recipe, name, mode, top1(path, x, y), model.size_bytes, integer, io)


def _fine_tune_float(recipe, qat, target: Path) -> Path:
    """The float model trained like the qat variant (same data, epochs, optimizer, lr, batch), without fake quant."""
    import keras

    from edgequant.qat.training import shuffled_batches  # the same batches, in the same order, as the qat variant

    keras.utils.set_random_seed(0)
    model = keras.saving.load_model(recipe.model.path, compile=False)
    optimizer = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD,
                 "rmsprop": keras.optimizers.RMSprop}[qat.optimizer](qat.learning_rate)
    model.compile(optimizer=optimizer, loss=qat.loss)
    data = qat.training or recipe.calibration
    for epoch in range(qat.epochs):
        for xb, yb in shuffled_batches(data, None, qat.batch_size, seed=epoch):
            model.train_on_batch(xb, yb)
    model.save(target)
    return target


def render(rows: list[Row], min_recovery: float) -> tuple[bool, str]:
    """The Markdown table and verdicts (printed, and written to docs/results/qat_recovery.md); ok is False on a FAIL."""
    ok = True
    lines = ["| model (recipe) | variant | mode | top-1 % | drop (points) | size KiB | full integer | I/O |",
             "|---|---|---|---:|---:|---:|---|---|"]
    notes = []
    for recipe in dict.fromkeys(r.recipe for r in rows):
        group = [r for r in rows if r.recipe == recipe]
        ref = next(r for r in group if r.mode == "float32")
        for r in group:
            drop = (ref.top1 - r.top1) * 100
            lines.append(f"| `{recipe}` | {r.variant} | {r.mode} | {r.top1 * 100:.2f} | {drop:.2f} | "
                         f"{r.size_bytes / 1024:.1f} | {'yes' if r.full_integer else 'no'} | {r.io_dtypes} |")
        ptq = next((r for r in group if r.mode == "int8"), None)
        tuned = next((r for r in group if r.mode == "int8+ft"), None)
        qat = next((r for r in group if r.mode == "qat"), None)
        if ptq and qat:
            ptq_loss, qat_loss = (ref.top1 - ptq.top1) * 100, (ref.top1 - qat.top1) * 100
            if ptq_loss >= 1.0:
                recovered = (qat.top1 - ptq.top1) / (ref.top1 - ptq.top1)
                verdict = "ok" if recovered >= min_recovery and qat.full_integer else "FAIL"
                ok &= verdict == "ok"
                notes.append(f"- `{recipe}`: post-training int8 lost {ptq_loss:.2f} points; QAT int8 lost "
                             f"{qat_loss:.2f}: recovered {recovered:.0%} of the loss (need >= {min_recovery:.0%}) "
                             f"[{verdict}]")
            else:
                notes.append(f"- `{recipe}`: post-training int8 lost {ptq_loss:.2f} points (under 1: nothing much "
                             f"to recover); QAT int8 lost {qat_loss:.2f}")
            if tuned:
                notes.append(f"- `{recipe}` control (`+ft`): the float model trained as long without fake quant, "
                             f"then post-training int8: {tuned.top1 * 100:.2f}% "
                             f"({(ref.top1 - tuned.top1) * 100:.2f} points below float32)")
    return ok, "\n".join(lines + [""] + notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, action="append", help="recipe(s) to measure (default: both examples)")
    parser.add_argument("--min-recovery", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    x, y = load_fashion_mnist("test")
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qat-recovery-") as tmp:
        for recipe in args.recipe or RECIPES:
            rows += measure(recipe.resolve(), x, y, Path(tmp))
    ok, table = render(rows, args.min_recovery)
    table += (f"\n\n{len(x):,} Fashion-MNIST test images per model, LiteRT interpreter (XNNPACK, 1 thread); "
              f"measured in {time.perf_counter() - started:.0f} s.")
    print(table)
    write_results("qat_recovery", table)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
