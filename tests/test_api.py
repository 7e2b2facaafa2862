"""The Python API as Keras training code uses it: in-memory models, arrays, the same variant options."""

from __future__ import annotations

import json

import numpy as np
import pytest

import edgequant as eq
from edgequant.cli import main
from edgequant.errors import DataError, InputError
from edgequant.model.tflite_file import read_tflite
from tests.conftest import FMNIST_MODEL


@pytest.fixture(scope="module")
def keras_model():
    import keras

    return keras.saving.load_model(FMNIST_MODEL, compile=False)


@pytest.fixture(scope="module")
def calibration(fmnist_test_set):
    return fmnist_test_set[0][:64]


def test_quantize_in_memory_keras3_model(keras_model, calibration):
    data = eq.quantize(keras_model, "int8", calibration=calibration)
    m = read_tflite(data)
    assert m.inputs[0].dtype == "int8" and m.outputs[0].dtype == "int8"
    assert "float32" not in {t.dtype for t in m.tensors}


def test_per_tensor_and_uint8_io_options(keras_model, calibration):
    data = eq.quantize(keras_model, "int8", calibration=lambda: iter(calibration), per_channel=False,
                       input_type="uint8", output_type="float32")
    m = read_tflite(data)
    assert m.inputs[0].dtype == "uint8" and m.outputs[0].dtype == "float32"
    weights = [t for t in m.tensors if t.is_constant and t.dtype == "int8"]
    assert weights and not any(t.quantization.per_channel for t in weights)


def test_float16_from_a_model_path():
    m = read_tflite(eq.quantize(FMNIST_MODEL, "float16"))
    assert m.tensor_dtypes(constant=True)["float16"] >= 4


def test_tf_keras_model_and_input_shape_override():
    import tf_keras

    model = tf_keras.Sequential([tf_keras.Input((None, None, 3)), tf_keras.layers.Conv2D(4, 3),
                                 tf_keras.layers.GlobalAveragePooling2D(), tf_keras.layers.Dense(2)])
    m = read_tflite(eq.quantize(model, "dynamic", input_shape=[32, 32, 3]))
    assert m.inputs[0].shape_signature == (-1, 32, 32, 3)


def test_bad_options_and_data(keras_model, calibration):
    with pytest.raises(InputError, match="needs calibration data"):
        eq.quantize(keras_model, "int8")
    with pytest.raises(InputError, match=r"quantize\(mode='int8'\): per_chanel: Extra inputs are not permitted"):
        eq.quantize(keras_model, "int8", calibration=calibration, per_chanel=False)
    with pytest.raises(InputError, match="'int3'"):
        eq.quantize(keras_model, "int3")
    wrong = np.zeros((4, 32, 32, 1), dtype=np.float32)
    with pytest.raises(DataError, match=r"calibration sample 0 from the calibration argument has shape \(32, 32, 1\)"):
        eq.quantize(keras_model, "int8", calibration=wrong)


def test_build_a_recipe_object(tmp_path):
    recipe = eq.Recipe(
        name="api",
        model=eq.ModelSpec(path=FMNIST_MODEL),
        output_dir=tmp_path,
        variants=[eq.Float32Variant(name="ref"), eq.DynamicVariant(name="small")],
    )
    result = eq.build(recipe)
    assert [a.name for a in result.artifacts] == ["ref", "small"]
    assert result.artifact("small").size_bytes < 0.3 * result.artifact("ref").size_bytes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["recipe"]["path"] is None and manifest["recipe"]["name"] == "api"


def test_inspect_shows_ops_and_quantization(fmnist_int8_tflite, capsys):
    assert main(["inspect", str(fmnist_int8_tflite), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["op_counts"]["CONV_2D"] == 2 and info["op_counts"]["FULLY_CONNECTED"] == 2
    assert info["inputs"][0]["dtype"] == "int8"
    assert info["inputs"][0]["quantization"]["zero_point"] == [-128]
    assert main(["inspect", str(fmnist_int8_tflite)]) == 0
    text = capsys.readouterr().out
    assert "CONV_2D" in text and "quantized tensors (17)" in text and " x64 " in text
