"""A recipe is code: what runs the author's Python is refused by default and works when opted in."""

from __future__ import annotations

import pytest

import edgequant as eq
from edgequant.errors import InputError
from edgequant.tflite_file import read_tflite
from tests.test_bad_input_matrix import lambda_model, run

RECIPE = """\
model: {{path: {model}}}
calibration:
  source: {{type: callable, target: 'tests.test_bad_input_matrix:good_samples'}}
  samples: 8
benchmark: {{enabled: false}}
variants:
  - {{name: float32, mode: float32}}
  - {{name: int8, mode: int8, analyse_layers: false}}
{extra}"""


@pytest.mark.slow
def test_callable_source_and_lambda_layer_build_when_trusted(tmp_path, capsys):
    """A tf_keras .h5 with a Lambda layer, calibrated by a callable: refused, then built with --trust-code."""
    model = lambda_model(tmp_path, "h5")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(model=model, extra=""))
    code, errors = run(capsys, ["recipe", "check", recipe])
    assert code == 2 and len(errors) == 2  # both, in one run, in file order
    assert "model.path" in errors[0] and "Lambda layer(s) double" in errors[0] and "--trust-code" in errors[0]
    assert "calibration.source.type: a callable data source" in errors[1] and "--trust-code" in errors[1]

    assert run(capsys, ["recipe", "check", recipe, "--trust-code"]) == (0, [])
    code, errors = run(capsys, ["build", recipe, "--trust-code", "-o", tmp_path / "out"])
    assert (code, errors) == (0, [])
    int8 = read_tflite(tmp_path / "out" / "int8.tflite")
    assert int8.inputs[0].dtype == "int8" and int8.inputs[0].quantization is not None  # calibrated on the callable

    recipe.write_text(RECIPE.format(model=model, extra="trust_code: true\n"))
    assert run(capsys, ["recipe", "check", recipe]) == (0, [])


def test_python_api_needs_trust_code_for_lambda_layers(tmp_path):
    model = lambda_model(tmp_path, "keras")
    with pytest.raises(InputError, match=r"Lambda layer\(s\) double run Python code .*trust_code=True in Python"):
        eq.quantize(model, "float32")
    assert read_tflite(eq.quantize(model, "float32", trust_code=True)).inputs[0].shape == (1, 28, 28, 1)


def test_python_api_needs_trust_code_for_callable_sources(tmp_path):
    from tests.conftest import FMNIST_MODEL

    recipe = eq.Recipe(
        model=eq.ModelSpec(path=FMNIST_MODEL),
        calibration=eq.DataSpec(source={"type": "callable", "target": "tests.test_bad_input_matrix:good_samples"},
                                samples=8),
        variants=[eq.Int8Variant(name="int8")],
        output_dir=tmp_path / "out",
    )
    with pytest.raises(InputError, match="calibration.source.type: a callable data source runs .*--trust-code"):
        eq.build(recipe)
    assert not (tmp_path / "out").exists()
