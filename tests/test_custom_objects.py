"""Custom layers: `model.custom_objects` in recipes, `--custom-objects` for quantize, `custom_objects=` in Python.

Before issue 23 a tf_keras .h5 with a custom layer was a dead end on the command line ("Unknown layer").
"""

from __future__ import annotations

import json

import pytest
import yaml

from tests.custom_layer_models import AttentionPooling, attention_model
from tests.recurrent_models import sequence_files, sequence_recipe

LAYER = "tests.custom_layer_models:AttentionPooling"


@pytest.fixture(scope="module")
def h5_model(tmp_path_factory):
    return attention_model(tmp_path_factory.mktemp("custom") / "attention.h5")


def _recipe(tmp_path, model, modes, **model_keys):
    files = sequence_files(tmp_path / "data")
    recipe = sequence_recipe(model, files, modes, output_dir=str(tmp_path / "out"))
    recipe["model"].update(model_keys)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_an_unknown_layer_names_the_recipe_key_the_cli_flag_and_the_python_argument(h5_model, tmp_path, capsys):
    from edgequant.cli import main

    assert main(["build", str(_recipe(tmp_path, h5_model, ["float32"]))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "'AttentionPooling', a custom layer" in err
    assert 'custom_objects: ["package.module:AttentionPooling"]' in err  # the recipe key
    assert "--custom-objects package.module:AttentionPooling" in err  # quantize's flag
    assert "custom_objects=[AttentionPooling]" in err and "--trust-code" in err  # Python, and the opt-in


def test_custom_objects_without_the_trust_opt_in_are_refused_before_anything_is_imported(h5_model, tmp_path, capsys):
    from edgequant.cli import main

    recipe = _recipe(tmp_path, h5_model, ["float32"], custom_objects=[LAYER])
    assert main(["recipe", "check", str(recipe)]) == 2
    assert "model.custom_objects" in capsys.readouterr().err
    assert main(["build", str(recipe)]) == 2
    assert "--trust-code" in capsys.readouterr().err
    assert not (tmp_path / "out" / "float32.tflite").exists()


@pytest.mark.slow
def test_a_tf_keras_h5_with_a_custom_attention_layer_builds_from_a_recipe(h5_model, tmp_path):
    from edgequant.cli import main

    recipe = _recipe(tmp_path, h5_model, ["float32", "dynamic", "int8"], custom_objects=[LAYER])
    assert main(["build", str(recipe), "--trust-code"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["source_model"]["kind"] == "h5-tf_keras"
    for v in report["variants"]:
        assert v["evaluation"]["samples"] == 40 and v["evaluation"]["agreement"] >= 0.85, v["name"]


def test_python_quantize_takes_the_class_itself_and_converts_what_keras_computes(h5_model, tmp_path):
    import numpy as np
    import tf_keras

    import edgequant as eq
    from edgequant.model.runtime import load_interpreter

    data = eq.quantize(h5_model, "float32", custom_objects=[AttentionPooling])
    x = sequence_files(tmp_path)["eval"]
    sample = np.load(x)[:1]
    interpreter = load_interpreter(data)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    keras_model = tf_keras.models.load_model(h5_model, custom_objects={"AttentionPooling": AttentionPooling})
    np.testing.assert_allclose(got, keras_model(sample).numpy(), atol=1e-5)


@pytest.mark.slow
def test_quantize_takes_custom_objects_and_writes_them_into_the_recipe_it_repeats_with(h5_model, tmp_path):
    from edgequant.cli import main

    out = tmp_path / "quick"
    args = ["quantize", str(h5_model), "--dynamic", "-o", str(out), "--no-bench", "--no-devices",
            "--custom-objects", LAYER]
    assert main(args) == 2  # importing the module runs its code: refused without the opt-in
    assert main([*args, "--trust-code"]) == 0
    assert (out / "dynamic.tflite").is_file()
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert recipe["model"]["custom_objects"] == [LAYER]
