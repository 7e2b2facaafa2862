"""int8 builds that crashed (issue 23, items 9-12), on real conversions, a real interpreter and Fashion-MNIST.

9: the per-layer analysis with an input zero point of 0; 10: the Keras 3 int8 fixes on a model with
several outputs; 11: adaptive rounding's memory on a large layer; 12: all-zero calibration data.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgequant.errors import DataError
from edgequant.recipe.schema import Int8Variant
from tests.conftest import FMNIST_MODEL


@pytest.fixture(scope="module")
def train_images() -> np.ndarray:
    from edgequant.data.idx import load_fashion_mnist

    return load_fashion_mnist("train")[0][:200]


@pytest.fixture(scope="module")
def fmnist_export(tmp_path_factory):
    from edgequant.model.source_model import export_model

    return export_model(FMNIST_MODEL, tmp_path_factory.mktemp("export"))


# --- item 9 ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_layer_analysis_runs_when_the_input_zero_point_is_zero(fmnist_export, train_images):
    """Pixels mapped to [-1, 127/128] calibrate the int8 input to scale 1/128, zero point 0, which TF's
    QuantizationDebugger took for "no quantization" and fed float samples to the int8 input."""
    from edgequant.model.tflite_file import read_tflite
    from edgequant.quantization.layer_error import ROUNDING_FLOOR, QuantizationAnalysis

    signed = train_images * (255 / 128) - 1.0  # 0..255 pixels / 128 - 1
    analysis = QuantizationAnalysis(fmnist_export.saved_model_dir, Int8Variant(name="int8"),
                                    lambda: iter(signed[:40]), signed[100:116])
    quantization = read_tflite(analysis.quantized_model()).inputs[0].quantization
    assert (quantization.scale[0], quantization.zero_point[0]) == pytest.approx((1 / 128, 0))
    errors = analysis.layer_errors()
    first_conv = next(e for e in errors if e.op == "CONV_2D" and "conv2d_1/" in e.layer)
    # the first layer sees the input as calibrated: its error is rounding noise, not a misread input
    assert first_conv.rmse_steps < 2 * ROUNDING_FLOOR, first_conv


@pytest.mark.slow
def test_layer_analysis_stops_taking_debug_samples_after_its_time(fmnist_export, train_images, monkeypatch):
    """A long-sequence model's instrumented invoke takes seconds: the comparison is bounded by DEBUG_SECONDS."""
    import edgequant.quantization.layer_error as layer_error

    monkeypatch.setattr(layer_error, "DEBUG_SECONDS", 0.0)  # every sample is over time: the minimum is taken
    analysis = layer_error.QuantizationAnalysis(fmnist_export.saved_model_dir, Int8Variant(name="int8"),
                                                lambda: iter(train_images[:40]), train_images[100:116])
    assert analysis.layer_errors() and analysis.debug_samples_used == layer_error.MIN_DEBUG_SAMPLES


# --- item 12 ---------------------------------------------------------------------------------------


def test_all_zero_calibration_data_is_refused_with_a_clear_message(tmp_path):
    from edgequant.pipeline import build_recipe
    from edgequant.recipe.schema import Recipe

    np.save(tmp_path / "zeros.npy", np.zeros((20, 28, 28, 1), np.float32), allow_pickle=False)
    recipe = Recipe(
        name="zeros", model={"path": FMNIST_MODEL}, output_dir=tmp_path / "out",
        calibration={"source": {"type": "npy", "path": tmp_path / "zeros.npy"}},
        variants=[{"name": "float32", "mode": "float32"}, {"name": "int8", "mode": "int8"}],
    )
    with pytest.raises(DataError, match=r"all 20 calibration samples hold the same value \(0\) everywhere"):
        build_recipe(recipe, host_benchmark=False, devices=False)
    assert not list((tmp_path / "out").glob("*.tflite"))  # nothing built


# --- item 10 ---------------------------------------------------------------------------------------


def _two_head_model(path: Path, images: np.ndarray) -> Path:
    """A Keras 3 model with a dict of two outputs: 10 class probabilities and a brightness regression."""
    import keras

    from edgequant.data.idx import load_fashion_mnist

    keras.utils.set_random_seed(0)
    labels = load_fashion_mnist("train")[1][: len(images)]
    inp = keras.Input((28, 28, 1), name="image")
    h = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inp)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flat")(h)
    h = keras.layers.Dense(16, activation="relu", name="hidden")(h)
    outputs = {"classes": keras.layers.Dense(10, activation="softmax", name="classes")(h),
               "brightness": keras.layers.Dense(1, name="brightness")(h)}
    model = keras.Model(inp, outputs)
    model.compile("adam", {"classes": "sparse_categorical_crossentropy", "brightness": "mse"})
    model.fit(images, {"classes": labels, "brightness": images.mean(axis=(1, 2, 3))[:, None]}, epochs=2,
              batch_size=50, verbose=0)
    model.save(path)
    return path


@pytest.mark.slow
def test_keras3_fixes_build_a_model_with_two_outputs_and_report_the_layers_adaround_skipped(tmp_path, train_images):
    from edgequant.model.tflite_file import read_tflite
    from edgequant.pipeline import build_recipe
    from edgequant.recipe.schema import Recipe

    model = _two_head_model(tmp_path / "two_heads.keras", train_images)
    np.save(tmp_path / "calib.npy", train_images[:60], allow_pickle=False)
    recipe = Recipe(
        name="heads", model={"path": model}, output_dir=tmp_path / "out",
        calibration={"source": {"type": "npy", "path": tmp_path / "calib.npy"}},
        variants=[{"name": "float32", "mode": "float32"},
                  {"name": "int8", "mode": "int8", "equalize": True, "adaround": True, "bias_correction": True}],
    )
    result = build_recipe(recipe, host_benchmark=False, devices=False)
    fixes = result.report.variant("int8").int8_fixes
    assert fixes.float_check["max_abs_change"] <= fixes.float_check["tolerance"]  # both heads unchanged in float
    skipped = {s["layer"]: s for s in fixes.skipped_layers}
    # 40 fitting samples give 40 patches to the Dense layer reading 1,352 values: far too few to fit its rounding
    assert skipped["hidden"]["fix"] == "adaround" and "too few input patches" in skipped["hidden"]["reason"]
    assert "adaround left `hidden` alone" in (tmp_path / "out" / "report.md").read_text()
    info = read_tflite(result.path("int8"))
    assert {t.dtype for t in info.inputs + info.outputs} == {"int8"} and len(info.outputs) == 2


# --- item 11 ---------------------------------------------------------------------------------------


def _with_peak(run):
    """run()'s result, and the peak of the memory Python and numpy allocated during it (tracemalloc), in bytes."""
    tracemalloc.start()
    try:
        return run(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _wide_conv_model():
    """A 7x7 convolution reading 64 channels: 3,136 inputs per output, a 75 MiB float64 second moment."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(64, 1, activation="relu", name="expand")(inp)
    h = keras.layers.Conv2D(4, 7, name="wide")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, keras.layers.Dense(3, name="small")(h))


def test_adaround_skips_a_layer_over_its_memory_budget_and_stays_within_it(train_images, monkeypatch):
    from edgequant.int8_fixes.adaround import adaround
    from edgequant.int8_fixes.budget import ENV_VAR

    model = _wide_conv_model()
    samples = train_images[:64]
    model.predict(samples[:8], verbose=0)  # TF's first-call allocations are not the fix's
    monkeypatch.setenv(ENV_VAR, "16")
    (roundings, skipped), peak = _with_peak(lambda: adaround(model, samples, per_channel=True))
    assert [s.layer for s in skipped] == ["wide"] and "over the 16.0 MiB budget" in skipped[0].reason
    assert {r.layer for r in roundings} == {"expand", "small"}  # the layers it can afford are still rounded
    # without the budget, the wide layer alone held 3,136^2 float64 twice over and its float32 product: ~190 MiB
    assert peak < 32 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_adaround_skips_the_61952_input_dense_layer_before_allocating_anything(train_images):
    """The issue's layer: a Dense reading 61,952 values, whose second moment would take 28.6 GiB."""
    import keras

    from edgequant.int8_fixes.adaround import adaround

    keras.utils.set_random_seed(0)
    inp = keras.Input((22, 22, 1))
    h = keras.layers.Conv2D(128, 1, name="expand")(inp)
    h = keras.layers.Flatten()(h)  # 22 * 22 * 128 = 61,952
    model = keras.Model(inp, keras.layers.Dense(10, name="large")(h))
    samples = np.ascontiguousarray(train_images[:40, 3:25, 3:25])
    model.predict(samples[:8], verbose=0)
    (_, skipped), peak = _with_peak(lambda: adaround(model, samples, per_channel=True))
    large = next(s for s in skipped if s.layer == "large")
    assert "61,952 inputs" in large.reason and "too few input patches" in large.reason
    assert peak < 64 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_a_bad_memory_budget_setting_is_a_clear_error(monkeypatch):
    from edgequant.errors import InputError
    from edgequant.int8_fixes.budget import ENV_VAR, memory_budget

    monkeypatch.setenv(ENV_VAR, "lots")
    with pytest.raises(InputError, match=f"{ENV_VAR}='lots': expected a positive number of MiB"):
        memory_budget()


# --- report wording ----------------------------------------------------------------------------------


def _fixes_section(**fields) -> str:
    from edgequant.report.render import _int8_fixes
    from edgequant.report.schema import Int8FixesReport

    report = Int8FixesReport(requested=["bias_correction:empirical"], decided_on="40 held-out calibration samples",
                             **fields)
    return "\n".join(_int8_fixes(SimpleNamespace(name="int8", int8_fixes=report)))


def test_a_reverted_fix_that_scored_higher_says_the_gain_was_not_significant():
    text = _fixes_section(kept=False, plain={"agreement": 0.8, "mse": 0.02}, fixed={"agreement": 0.9, "mse": 0.01},
                          significance={"agreement": 1.6, "mse": 1.2, "sigmas": 2.0},
                          layer_errors_plain=[{"layer": "conv", "op": "CONV_2D", "elements": 10,
                                               "rmse": 0.1, "max_abs_error": 0.2, "mean_error": 0.0, "scale": 0.1,
                                               "rmse_steps": 1.0}])
    assert "no better" not in text
    assert "90.00% against 80.00%, but by 1.6 standard errors" in text and "not significant" in text
    assert "after them" not in text and "of plain int8, the artifact" in text
    worse = _fixes_section(kept=False, plain={"agreement": 0.9, "mse": 0.01}, fixed={"agreement": 0.8, "mse": 0.02},
                           significance={"agreement": -1.6, "mse": -1.2, "sigmas": 2.0})
    assert "not kept (no better than plain int8 on that data)" in worse
