"""The quick path: `edgequant quantize` without YAML, `edgequant init`, and the Recipe -> YAML writer, for real."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
import yaml

from edgequant.cli import main
from edgequant.recipe.loader import load_recipe
from edgequant.recipe.schema import Recipe
from edgequant.recipe.writer import recipe_yaml
from tests.conftest import FMNIST_MODEL, REPO

WIDE_RANGE_MODEL = REPO / "recipes" / "wide_range" / "wide_range_cnn.keras"
FER_MODEL = REPO / "recipes" / "fer_emotion" / "emotion_model.hdf5"
LFW_FACES = REPO / "calibration_sets" / "lfw_faces"


def _normalised(data):
    """Recipe data with absolute paths normalised ('recipes/../data' is 'data'), as a file system sees them."""
    if isinstance(data, dict):
        return {k: _normalised(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_normalised(v) for v in data]
    return os.path.normpath(data) if isinstance(data, str) and data.startswith("/") else data


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the writer ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shipped", sorted((REPO / "recipes").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_survives_writing_and_loading(shipped, tmp_path):
    recipe = load_recipe(shipped)
    written = tmp_path / "again.yaml"
    written.write_text(recipe_yaml(recipe, written, header=["a header"], comments={"variants": ["why"]}))
    assert _normalised(load_recipe(written).model_dump(mode="json")) == _normalised(recipe.model_dump(mode="json"))
    text = written.read_text()
    assert text.startswith("# a header\n") and "# why\nvariants:" in text


def test_paths_next_to_the_recipe_are_written_relative(tmp_path):
    (tmp_path / "models").mkdir()
    shutil.copy(FMNIST_MODEL, tmp_path / "models" / "m.keras")
    recipe = Recipe(model={"path": tmp_path / "models" / "m.keras"}, output_dir=tmp_path / "out",
                    variants=[{"name": "small", "mode": "dynamic"}])
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe_yaml(recipe, path))
    data = yaml.safe_load(path.read_text())
    assert data["model"] == {"path": "models/m.keras"} and data["output_dir"] == "out"
    assert data["variants"] == [{"name": "small", "mode": "dynamic"}]  # defaults left out, the mode tag kept
    assert load_recipe(path) == recipe


# --- quantize ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quantize_then_build_its_recipe_gives_byte_identical_artifacts(tmp_path, capsys):
    quick, again = tmp_path / "quick", tmp_path / "again"
    code = main(["quantize", str(FMNIST_MODEL), "--int8", "--calib", "fashion-mnist:train",
                 "--eval", "fashion-mnist:test", "-o", str(quick)])
    assert code == 0, capsys.readouterr().err
    recipe = load_recipe(quick / "recipe.yaml")
    assert [(v.name, v.mode) for v in recipe.variants] == [("float32", "float32"), ("int8", "int8")]
    assert recipe.calibration.samples == 500 and recipe.calibration.preprocess.scale == pytest.approx(1 / 255)
    assert recipe.evaluation.source.split == "test" and recipe.output_dir == quick.resolve()
    report = json.loads((quick / "report.json").read_text())
    assert report["variants"][1]["evaluation"]["samples"] == 10_000
    assert report["variants"][1]["evaluation"]["top1"] > 0.85  # the 1/255 default is the model's own preprocessing

    assert main(["build", str(quick / "recipe.yaml"), "-o", str(again)]) == 0
    for name in ("float32.tflite", "int8.tflite"):
        assert _sha256(quick / name) == _sha256(again / name), name
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (quick, again)]
    assert manifests[0]["recipe"]["sha256"] == manifests[1]["recipe"]["sha256"]


def test_int8_without_calibration_data_is_refused_before_any_conversion(tmp_path, capsys):
    assert main(["quantize", str(FMNIST_MODEL), "--int8", "-o", str(tmp_path / "out")]) == 2
    assert "--int8 needs --calib DATA" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_device_and_missing_data_name_the_option(tmp_path, capsys):
    assert main(["quantize", str(FMNIST_MODEL), "--dynamic", "-d", "rpi44", "-o", str(tmp_path / "o")]) == 2
    assert "unknown device 'rpi44' (did you mean 'rpi4'?)" in capsys.readouterr().err
    assert main(["quantize", str(FMNIST_MODEL), "--calib", str(tmp_path / "nope"), "-o", str(tmp_path / "o")]) == 2
    assert f"--calib {tmp_path / 'nope'}: no such file or folder" in capsys.readouterr().err


# --- init ----------------------------------------------------------------------------------------


def _mobilenet_v2(folder):
    import keras

    path = folder / "mobilenet_v2.keras"
    keras.applications.MobileNetV2(weights=None).save(path)
    return path


def _init_and_check(model, recipe, calib, capsys):
    assert main(["init", str(model), "-o", str(recipe), "--calib", calib]) == 0, capsys.readouterr().err
    assert main(["recipe", "check", str(recipe)]) == 0, capsys.readouterr().err
    return load_recipe(recipe)


@pytest.mark.parametrize("model", [FMNIST_MODEL, WIDE_RANGE_MODEL], ids=["fashion_mnist", "wide_range"])
def test_init_on_the_28x28_models_needs_no_resize_and_builds(model, tmp_path, capsys):
    recipe = _init_and_check(model, tmp_path / "recipe.yaml", "fashion-mnist", capsys)
    p = recipe.calibration.preprocess
    assert (p.resize, p.color, p.scale) == (None, "keep", pytest.approx(1 / 255))
    assert recipe.output_path() == tmp_path / "build" / model.stem
    assert main(["build", str(tmp_path / "recipe.yaml")]) == 0
    assert sorted(f.name for f in recipe.output_path().glob("*.tflite")) == [
        "dynamic.tflite", "float16.tflite", "float32.tflite", "int8.tflite"]


@pytest.mark.slow
@pytest.mark.parametrize("model", [FER_MODEL, "mobilenet_v2"], ids=["fer_emotion", "mobilenet_v2"])
def test_init_on_the_image_models_resizes_faces_and_builds(model, tmp_path, capsys):
    model = _mobilenet_v2(tmp_path) if model == "mobilenet_v2" else model
    recipe = _init_and_check(model, tmp_path / "recipe.yaml", str(LFW_FACES), capsys)
    p = recipe.calibration.preprocess
    expected = ((64, 64), "grayscale") if model == FER_MODEL else ((224, 224), "rgb")
    assert (p.resize, p.color) == expected
    assert main(["build", str(tmp_path / "recipe.yaml")]) == 0
    built = json.loads((recipe.output_path() / "manifest.json").read_text())["artifacts"]
    int8 = next(a for a in built if a["name"] == "int8")
    assert int8["inputs"][0]["dtype"] == "int8" and int8["inputs"][0]["shape"][1:3] == list(expected[0])


def test_init_without_data_writes_a_placeholder_that_recipe_check_reports(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    assert main(["init", str(FER_MODEL), "-o", str(recipe)]) == 0
    text = recipe.read_text()
    assert "# input 64x64x1 float32 (read from the model)" in text
    assert "#   rpi4: Raspberry Pi 4 Model B, Cortex-A72" in text  # the devices, as a commented choice
    capsys.readouterr()
    assert main(["recipe", "check", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert f"{recipe}:" in err and "calibration.source.path: no such file or directory" in err and "CHANGE-ME" in err
    assert main(["init", str(FER_MODEL), "-o", str(recipe)]) == 2  # never overwrites without --force
    assert "already exists" in capsys.readouterr().err


def test_a_rescaling_layer_means_no_scale(tmp_path, capsys):
    import keras

    model = keras.Sequential([
        keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.save(tmp_path / "rescaling.keras")
    recipe = _init_and_check(tmp_path / "rescaling.keras", tmp_path / "recipe.yaml", "fashion-mnist", capsys)
    assert recipe.calibration.preprocess.scale == 1.0
    text = (tmp_path / "recipe.yaml").read_text()
    assert "  preprocess:" not in text  # the default preprocess: nothing to write
    assert "Rescaling(scale=0.00392157, offset=0)" in text and "  # no scale: the model's Rescaling layer" in text


# --- the Python API ------------------------------------------------------------------------------


@pytest.mark.slow
def test_api_quantize_with_devices_returns_the_same_bytes_and_the_report(fmnist_test_set, tmp_path):
    import keras

    import edgequant as eq

    model = keras.saving.load_model(FMNIST_MODEL, compile=False)
    x, y = fmnist_test_set
    plain = eq.quantize(model, "int8", calibration=x[:64])
    data, report = eq.quantize(model, "int8", calibration=x[:64], evaluation=(x[:1000], y[:1000]),
                               devices=["pixel4"], report=True, output_dir=tmp_path / "out")
    assert data == plain == (tmp_path / "out" / "int8.tflite").read_bytes()
    int8 = report.variant("int8")
    assert int8.evaluation.samples == 1000 and int8.evaluation.top1 > 0.85
    # On a dot-product core (the Pixel 4's A76) int8 runs about 3x fewer instructions than float32. (On the
    # Raspberry Pi 4's A72, without dot product, this small CNN's int8 is estimated no faster than float32.)
    pixel4 = next(lat for lat in int8.latency if lat.device == "pixel4")
    assert pixel4.estimate and pixel4.ms > 0 and pixel4.speedup_vs_reference > 1
    assert (tmp_path / "out" / "report.html").is_file()


def test_a_model_of_any_input_size_gets_a_commented_input_shape(tmp_path, capsys):
    import keras

    model = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    model.save(tmp_path / "any_size.keras")
    assert main(["init", str(tmp_path / "any_size.keras"), "-o", str(tmp_path / "recipe.yaml")]) == 0
    text = (tmp_path / "recipe.yaml").read_text()
    assert "# input ?x?x3 float32 (read from the model)" in text and "  # input_shape: [224, 224, 3]" in text
    assert "CHANGE-ME-calibration.npy" in text  # not an image of known size: the placeholder is an array file
