"""The child process that exports and converts (edgequant.quantization.convert_worker), with real TensorFlow.

A build of a Keras model file exports it in the child too, so that the building process does not import
TensorFlow a second time (benchmarks/build_speed.py measures what that costs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgequant.model.source_model import export_model
from edgequant.quantization.convert_worker import ConversionWorker
from tests.conftest import FMNIST_MODEL, REPO
from tests.recurrent_models import recurrent_model

BUILD_AND_SAY_WHAT_WAS_IMPORTED = """
import json, sys
from edgequant.pipeline import build_recipe
result = build_recipe(sys.argv[1])
print(json.dumps([m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules]))
"""


def _fmnist_recipe(tmp_path, **model_keys) -> str:
    recipe = {
        "model": {"path": str(FMNIST_MODEL), **model_keys},
        "calibration": {"source": {"type": "fashion-mnist", "split": "train"},
                        "preprocess": {"scale": 1 / 255}, "samples": 20},
        "benchmark": {"enabled": False},
        "output_dir": str(tmp_path / "out"),
        "variants": [{"name": "float32", "mode": "float32"}, {"name": "dynamic", "mode": "dynamic"},
                     {"name": "int8", "mode": "int8", "analyse_layers": False}],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_a_build_that_only_converts_never_imports_tensorflow_in_the_building_process(tmp_path):
    import tensorflow as tf

    run = subprocess.run([sys.executable, "-c", BUILD_AND_SAY_WHAT_WAS_IMPORTED, _fmnist_recipe(tmp_path)],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3"))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["float32", "dynamic", "int8"]
    assert manifest["tensorflow_version"] == tf.__version__


def test_the_child_imports_tensorflow_before_its_first_request():
    with ConversionWorker() as worker:
        maps = Path(f"/proc/{worker._process.pid}/maps")
        deadline = time.monotonic() + 120
        while "_pywrap_tensorflow_internal" not in maps.read_text():
            assert time.monotonic() < deadline, "the child has not imported TensorFlow"
            time.sleep(0.2)


@pytest.mark.slow
def test_the_childs_export_is_the_one_made_here_and_its_keras_model_loads_when_asked(tmp_path):
    model = recurrent_model(tmp_path / "lstm.keras", "lstm")
    (tmp_path / "here").mkdir()
    (tmp_path / "child").mkdir()
    here = export_model(model, tmp_path / "here")
    with ConversionWorker() as worker:
        exported = worker.export(model, tmp_path / "child")
    assert (exported.inputs, exported.source_kind, exported.source_sha256, exported.recurrent) == \
        (here.inputs, here.source_kind, here.source_sha256, here.recurrent) != ((), "keras", "", ())
    assert (exported.saved_model_dir / "saved_model.pb").is_file()
    assert exported._keras_model is None  # not loaded until a stage needs it: here, for the unrolled copy
    assert exported.saved_model_for("int8") != exported.saved_model_dir
    assert exported.keras_model.count_params() == here.keras_model.count_params()


@pytest.mark.slow
def test_a_crash_while_exporting_fails_the_build_and_not_the_process(tmp_path):
    # A Lambda layer (allowed with --trust-code) that kills its process with SIGSEGV when EDGEQUANT_TEST_CRASH
    # is set: Keras runs it when it loads and exports the model, which happens in the child.
    import keras

    crash = ("lambda x: __import__('os').kill(__import__('os').getpid(), 11) "
             "if __import__('os').environ.get('EDGEQUANT_TEST_CRASH') else x")
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(eval(crash))(inputs)))
    keras.Model(inputs, outputs).save(tmp_path / "crash.keras")
    recipe = yaml.safe_load(open(_fmnist_recipe(tmp_path)))
    recipe["model"]["path"] = str(tmp_path / "crash.keras")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run = subprocess.run([sys.executable, "-m", "edgequant", "build", str(tmp_path / "recipe.yaml"), "--trust-code"],
                         capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3",
                                  EDGEQUANT_TEST_CRASH="1"))
    assert run.returncode == 3, run.stderr
    assert "crash.keras" in run.stderr and "crashed (signal 11)" in run.stderr
    assert not (tmp_path / "out" / "float32.tflite").exists()
