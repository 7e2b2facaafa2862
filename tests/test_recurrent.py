"""Recurrent models (LSTM, GRU, Bidirectional, Masking) build for every mode TFLite can run, on real sequences.

Before issue 23 every one of them failed its float32 conversion ("Lowering tensor list ops is failed",
exit 3): the export's batch was left unknown. Their int8 calibration crashed the converter (SIGSEGV) on
the recurrent loop; the calibrated modes now convert an unrolled copy, and a crash that remains (a
SavedModel cannot be unrolled) costs that one variant, in the child process that converts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from edgequant.model.tflite_file import read_tflite
from tests.recurrent_models import recurrent_model, sequence_files, sequence_recipe


def _build(tmp_path, model, modes, capsys=None):
    from edgequant.cli import main

    files = sequence_files(tmp_path / "data")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(sequence_recipe(model, files, modes, output_dir=str(tmp_path / "out"))))
    code = main(["build", str(recipe)])
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, out, report


def _integer_ops(data: bytes) -> bool:
    """Every tensor of an int8 model's inputs and outputs is int8 (all-integer I/O)."""
    info = read_tflite(data)
    return all(t.dtype == "int8" for t in (*info.inputs, *info.outputs))


@pytest.mark.slow
def test_a_keras3_lstm_builds_float32_float16_dynamic_and_int8(tmp_path):
    model = recurrent_model(tmp_path / "lstm.keras", "lstm")
    code, out, report = _build(tmp_path, model, ["float32", "float16", "dynamic", "int8"])
    assert code == 0, report and report.get("not_built")
    variants = {v["name"]: v for v in report["variants"]}
    assert sorted(variants) == ["dynamic", "float16", "float32", "int8"]
    assert _integer_ops((out / "int8.tflite").read_bytes())
    for name, v in variants.items():  # evaluated on 40 real Fashion-MNIST sequences against the float32 reference
        assert v["evaluation"]["samples"] == 40, name
        assert v["evaluation"]["agreement"] >= 0.85, (name, v["evaluation"]["agreement"])
    reference = variants["float32"]["evaluation"]
    assert reference["top1"] > reference["chance_top1"]  # trained: better than always naming the commonest class


@pytest.mark.slow
def test_a_tf_keras_bidirectional_gru_with_masking_builds_and_int16x8_says_why_not(tmp_path):
    model = recurrent_model(tmp_path / "bigru.h5", "bigru+mask", tf_keras=True)
    code, out, report = _build(tmp_path, model, ["float32", "dynamic", "int8", "int16x8"])
    built = {v["name"] for v in report["variants"]}
    assert built == {"float32", "dynamic", "int8"}
    assert _integer_ops((out / "int8.tflite").read_bytes())
    # TFLite has no 16x8 kernel for the mask's select: that variant is reported, the others ship, exit 3
    assert [(n["name"], n["mode"]) for n in report["not_built"]] == [("int16x8", "int16x8")]
    assert "16x8" in report["not_built"][0]["reason"] and "\\n" not in report["not_built"][0]["reason"]
    assert code == 3
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["float32", "dynamic", "int8"]
    assert manifest["not_built"][0]["name"] == "int16x8"
    assert not (out / "int16x8.tflite").exists()


@pytest.mark.slow
def test_a_converter_crash_costs_one_variant_and_the_others_ship(tmp_path, capsys):
    # A Keras 3 LSTM exported as a SavedModel with a batch of 1: edgequant cannot unroll a SavedModel, and
    # TFLite's int8 calibration of the recurrent loop segfaults. The crash happens in the child that converts.
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(recurrent_model(tmp_path / "lstm.keras", "lstm"))
    saved_model = tmp_path / "lstm_saved_model"
    model.export(str(saved_model), format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec([1, 28, 28], tf.float32, name="rows")])
    code, out, report = _build(tmp_path, saved_model, ["float32", "int8", "dynamic"])
    assert code == 3
    assert report["not_built"] == [{"name": "int8", "mode": "int8", "reason": "the converter crashed (signal 11)"}]
    assert [v["name"] for v in report["variants"]] == ["float32", "dynamic"]  # the variant after the crash too
    assert (out / "float32.tflite").is_file() and (out / "dynamic.tflite").is_file()
    assert "- int8 (int8): not built: the converter crashed (signal 11)" in (out / "report.md").read_text()
    err = capsys.readouterr().err
    assert "variant int8 (int8) not built: the converter crashed (signal 11)" in err
    for v in report["variants"]:
        assert v["evaluation"]["agreement"] >= 0.85


def test_recurrent_layers_are_found_inside_bidirectional_and_nested_models():
    import keras

    from edgequant.model.source_model import recurrent_layers

    inner = keras.Sequential([keras.Input((5, 3)), keras.layers.Bidirectional(keras.layers.GRU(2), name="bi")],
                             name="inner")
    model = keras.Sequential([keras.Input((5, 3)), inner, keras.layers.Dense(2)])
    assert recurrent_layers(model) == ("bi",)
    plain = keras.Sequential([keras.Input((5, 3)), keras.layers.Conv1D(2, 3), keras.layers.Flatten()])
    assert recurrent_layers(plain) == ()
    sample = np.zeros((1, 5, 3), np.float32)
    assert model(sample).shape == (1, 2)


@pytest.mark.slow
def test_a_saved_model_looping_over_any_batch_is_refused_in_one_line_that_says_what_to_do(tmp_path, capsys):
    import keras

    model = keras.saving.load_model(recurrent_model(tmp_path / "lstm.keras", "lstm"))
    saved_model = tmp_path / "lstm_saved_model"
    model.export(str(saved_model), format="tf_saved_model", verbose=False)  # batch: None
    code, _, _ = _build(tmp_path, saved_model, ["float32"])
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "recurrent loop (TensorList ops) with an unknown batch size" in err and "\\n" not in err
    assert "export it with a batch of 1" in err
