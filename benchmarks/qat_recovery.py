"""How much of post-training int8's accuracy loss QAT wins back, measured in one run.

    python benchmarks/qat_recovery.py                  # both example recipes, ~4 min on 2 cores
    python benchmarks/qat_recovery.py --recipe recipes/wide_range_qat.yaml

Each recipe (float32, post-training int8 and a qat variant) is built for real with
`edgequant.pipeline.build_recipe`; every artifact is then run by the LiteRT interpreter
(XNNPACK, one image per invoke) on the 10,000 Fashion-MNIST test images. The table gives
top-1 accuracy, the drop from float32, the file size and whether the file is full-integer
(read back from the .tflite: every operator on int8/int32 tensors, int8 model input and output).
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

REPO = Path(__file__).resolve().parents[1]
RECIPES = [REPO / "recipes" / "fashion_mnist_qat.yaml", REPO / "recipes" / "wide_range_qat.yaml"]
DATA = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Row:
    recipe: str
    variant: str
    mode: str
    top1: float
    size_bytes: int
    full_integer: bool
    io_dtypes: str


def test_set() -> tuple[np.ndarray, np.ndarray]:
    from edgequant.data.idx import iter_idx

    x = np.stack(list(iter_idx(DATA / "t10k-images-idx3-ubyte.gz")))[..., None].astype(np.float32) / 255.0
    y = np.array(list(iter_idx(DATA / "t10k-labels-idx1-ubyte.gz")), dtype=np.int64)
    return x, y


def top1(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    from edgequant.runtime import dequantize_output, load_interpreter, quantize_input

    interp = load_interpreter(path)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    correct = 0
    for i in range(len(x)):
        interp.set_tensor(inp["index"], quantize_input(x[i:i + 1], inp))
        interp.invoke()
        correct += int(np.argmax(dequantize_output(interp.get_tensor(out["index"]), out)) == y[i])
    return correct / len(x)


def measure(recipe_path: Path, x, y, out_dir: Path) -> list[Row]:
    from edgequant.pipeline import build_recipe
    from edgequant.qat import float_operators
    from edgequant.tflite_file import read_tflite

    result = build_recipe(recipe_path, output_dir=out_dir / recipe_path.stem)
    rows = []
    for artifact in result.artifacts:
        path = result.path(artifact.name)
        model = read_tflite(path)
        integer = (artifact.mode in ("int8", "qat") and not float_operators(model)
                   and {t.dtype for t in (*model.inputs, *model.outputs)} <= {"int8", "uint8"})
        io = f"{model.inputs[0].dtype}->{model.outputs[0].dtype}"
        rows.append(Row(recipe_path.stem, artifact.name, artifact.mode, top1(path, x, y), model.size_bytes, integer, io))
    return rows


def render(rows: list[Row], min_recovery: float) -> bool:
    ok = True
    print(f"\n{'model (recipe)':<20} {'variant':<10} {'mode':<8} {'top-1 %':>8} {'drop pts':>9} "
          f"{'size KiB':>9} {'full-int':>9} {'I/O':>14}")
    for recipe in dict.fromkeys(r.recipe for r in rows):
        group = [r for r in rows if r.recipe == recipe]
        ref = next(r for r in group if r.mode == "float32")
        for r in group:
            drop = (ref.top1 - r.top1) * 100
            print(f"{recipe:<20} {r.variant:<10} {r.mode:<8} {r.top1 * 100:>8.2f} {drop:>9.2f} "
                  f"{r.size_bytes / 1024:>9.1f} {'yes' if r.full_integer else 'no':>9} {r.io_dtypes:>14}")
        ptq = next((r for r in group if r.mode == "int8"), None)
        qat = next((r for r in group if r.mode == "qat"), None)
        if ptq and qat:
            ptq_loss, qat_loss = (ref.top1 - ptq.top1) * 100, (ref.top1 - qat.top1) * 100
            if ptq_loss >= 1.0:
                recovered = (qat.top1 - ptq.top1) / (ref.top1 - ptq.top1)
                verdict = "ok" if recovered >= min_recovery and qat.full_integer else "FAIL"
                ok &= verdict == "ok"
                print(f"  -> post-training int8 lost {ptq_loss:.2f} points; QAT int8 lost {qat_loss:.2f}: "
                      f"recovered {recovered:.0%} of the loss (need >= {min_recovery:.0%}) [{verdict}]")
            else:
                print(f"  -> post-training int8 lost {ptq_loss:.2f} points (under 1: nothing much to recover); "
                      f"QAT int8 lost {qat_loss:.2f}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", type=Path, action="append", help="recipe(s) to measure (default: both examples)")
    parser.add_argument("--min-recovery", type=float, default=0.5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    x, y = test_set()
    rows: list[Row] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qat-recovery-") as tmp:
        for recipe in args.recipe or RECIPES:
            rows += measure(recipe.resolve(), x, y, Path(tmp))
    ok = render(rows, args.min_recovery)
    print(f"\n{len(x):,} Fashion-MNIST test images per model, LiteRT interpreter (XNNPACK, 1 thread); "
          f"measured in {time.perf_counter() - started:.0f} s")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
