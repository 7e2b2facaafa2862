"""Kinds of model edgequant had not been tried on (tests/unseen_models.py), each built for real through
`edgequant quantize` (the real converter and LiteRT's interpreter), or refused in one line.

Each test names what went wrong before its fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgequant.model.tflite_file import read_tflite
from tests import unseen_models


def _quantize(made: unseen_models.Made, out: Path, *extra: str, modes=("--int8", "--dynamic", "--float16")):
    from edgequant.cli import main

    code = main(["quantize", str(made.model), *modes, "--calib", str(made.calib), "--eval", str(made.eval),
                 "--samples", "32", "--no-devices", "--no-bench", "-o", str(out), *extra])
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    return code, report


def _litert(model: Path, x: np.ndarray) -> np.ndarray:
    """The first output of `model` for each sample, one invoke per sample, in LiteRT's own interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model))
    interpreter.allocate_tensors()
    detail, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    ys = []
    in_scale, in_zero = detail["quantization"]
    for sample in x:
        if in_scale:  # an int8 model's float data, quantized as its input says
            sample = np.clip(np.round(sample / in_scale + in_zero), -128, 127)
        interpreter.set_tensor(detail["index"], sample[None].astype(detail["dtype"]))
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"]).astype(np.float32)
        scale, zero = out["quantization"]
        ys.append((y - zero) * scale if scale else y)
    return np.concatenate(ys)


@pytest.mark.slow
def test_token_ids_calibrate_evaluate_and_time_in_their_own_integer_dtype(tmp_path, capsys):
    # Before: data was cast to float32 on its way to the model, so the int8 calibration failed ("Got value of
    # type FLOAT32 but expected type INT32") and the host benchmark stopped the build (exit 2).
    made = unseen_models.embed_gap(tmp_path)
    from edgequant.cli import main

    code = main(["quantize", str(made.model), "--int8", "--dynamic", "--calib", str(made.calib),
                 "--eval", str(made.eval), "--samples", "32", "--no-devices", "-o", str(tmp_path / "out")])
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert code == 0, capsys.readouterr().err[-800:]
    assert report["not_built"] == []
    int8 = tmp_path / "out" / "int8.tflite"
    assert [t.dtype for t in read_tflite(int8.read_bytes()).inputs] == ["int32"]
    ids = np.load(made.eval)
    reference = _litert(tmp_path / "out" / "float32.tflite", ids)
    assert len(set(reference.argmax(1))) == unseen_models.TEXT_CLASSES  # a trained model, not a constant one
    agreement = float((_litert(int8, ids).argmax(1) == reference.argmax(1)).mean())
    variants = {v["name"]: v for v in report["variants"]}
    assert variants["int8"]["evaluation"]["agreement"] == pytest.approx(agreement)
    assert agreement >= 0.9
    assert all(v["latency"] for v in report["variants"]), "every variant timed on the host"


def test_fractions_for_an_integer_input_are_refused_in_one_line(tmp_path, capsys):
    made = unseen_models.embed_gap(tmp_path)
    np.save(made.calib, np.load(made.calib).astype(np.float32) + 0.5)
    code, _ = _quantize(made, tmp_path / "out", modes=("--int8",))
    err = capsys.readouterr().err
    assert code == 2
    line = [x for x in err.splitlines() if x.startswith("edgequant: error:")]
    assert len(line) == 1 and "takes int32 values" in line[0] and "fractions" in line[0], err[-800:]


@pytest.mark.slow
def test_a_regressed_scalar_has_a_cosine_that_sees_its_error(tmp_path):
    # Before: the cosine of a one-value output was taken per sample, i.e. only its sign: 1.0 for every variant,
    # int8 included, whatever its error. Now it is taken across the samples' values.
    made = unseen_models.regression(tmp_path)
    code, report = _quantize(made, tmp_path / "out", modes=("--int8",))
    assert code == 0
    x = np.load(made.eval)
    reference = _litert(tmp_path / "out" / "float32.tflite", x).ravel().astype(np.float64)
    int8 = _litert(tmp_path / "out" / "int8.tflite", x).ravel().astype(np.float64)
    assert not np.allclose(int8, reference)  # int8 changed the values, so a cosine of 1.0 would be wrong
    expected = reference @ int8 / np.sqrt((reference @ reference) * (int8 @ int8))
    figures = {v["name"]: v["evaluation"] for v in report["variants"]}["int8"]
    assert figures["cosine"] == pytest.approx(expected, abs=1e-9)
    assert figures["cosine"] < 1.0
    assert figures["relative_error"] == pytest.approx(np.sqrt(((int8 - reference) ** 2).mean() / (reference**2).mean()),
                                                      rel=1e-4)
    # the float_layers search ranks samples by their fidelity: it must see int8's error on a scalar too
    from edgequant.quantization.mixed_precision import fidelity

    scores = fidelity({"y": int8[:, None]}, {"y": reference[:, None]})
    assert (fidelity({"y": reference[:, None]}, {"y": reference[:, None]}) == 1.0).all()
    assert scores.min() < 1.0 and np.argmin(scores) == np.argmax(np.abs(int8 - reference))


@pytest.mark.slow
def test_a_uint8_image_input_builds_every_variant_with_uint8_data(tmp_path, capsys):
    # Before: the uint8 pixels became float32 on their way in; int8 was not built and the benchmark stopped the
    # build ("data of dtype float32 does not fit the model's uint8", exit 2).
    made = unseen_models.uint8_image(tmp_path)
    code, report = _quantize(made, tmp_path / "out")
    assert code == 0, capsys.readouterr().err[-800:]
    assert sorted(v["name"] for v in report["variants"]) == ["dynamic", "float16", "float32", "int8"]
    x = np.load(made.eval)
    reference = _litert(tmp_path / "out" / "float32.tflite", x)
    assert len(set(reference.argmax(1))) > 3
    for name in ("dynamic", "int8"):
        path = tmp_path / "out" / f"{name}.tflite"
        assert [t.dtype for t in read_tflite(path.read_bytes()).inputs] == ["uint8"]
        agreement = float((_litert(path, x).argmax(1) == reference.argmax(1)).mean())
        figures = {v["name"]: v["evaluation"] for v in report["variants"]}[name]
        assert figures["agreement"] == pytest.approx(agreement) and agreement >= 0.9


def _near_tie_build(made: unseen_models.Made, out: Path, capsys) -> tuple[dict, str, np.ndarray, np.ndarray]:
    """int8 of `made` on its 100 evaluation samples: (the int8 output's figures, what report.md, report.html and
    the command line say, LiteRT's float32 and int8 outputs)."""
    from edgequant.cli import main

    code = main(["quantize", str(made.model), "--int8", "--calib", str(made.calib), "--eval", str(made.eval),
                 "--samples", "100", "--no-devices", "--no-bench", "-o", str(out)])
    said = capsys.readouterr().out + (out / "report.md").read_text() + (out / "report.html").read_text()
    assert code == 0, said[-800:]
    report = json.loads((out / "report.json").read_text())
    figures = {v["name"]: v["evaluation"] for v in report["variants"]}["int8"]["per_output"][0]
    x = np.load(made.eval)
    return figures, said, _litert(out / "float32.tflite", x), _litert(out / "int8.tflite", x)


@pytest.mark.slow
def test_low_agreement_beside_a_cosine_of_one_is_explained_by_near_ties(tmp_path, capsys):
    # Before: int8 of a barely trained classifier showed 76% agreement beside a cosine above 0.9999, and nothing
    # said that its top-1 flips where the float model's two best classes are nearly tied.
    figures, said, reference, int8 = _near_tie_build(unseen_models.near_tied(tmp_path), tmp_path / "out", capsys)
    assert len(set(reference.argmax(1))) > 1  # its top-1 depends on the image: not a degenerate model
    flipped = reference.argmax(1) != int8.argmax(1)
    top2 = np.sort(reference.astype(np.float64), axis=1)[:, -2:]
    rms = np.sqrt(((int8.astype(np.float64) - reference) ** 2).mean())
    near = int(((top2[:, 1] - top2[:, 0])[flipped] < 2 * rms).sum())
    assert figures["agreement"] < 0.98 and figures["cosine"] > 0.999
    assert figures["disagreements"] == flipped.sum() and figures["near_ties"] == near
    assert figures["near_tie_margin"] == pytest.approx(2 * rms, rel=1e-4)
    # most of int8's flips are near-ties, so the explanation holds; not all: the margin separates them
    assert flipped.sum() / 2 < near < flipped.sum()
    words = f"{near} of {flipped.sum()} disagreements are near-ties in the float32 model (its top-2 margin "
    assert said.count(words) == 3, said  # the command line, report.md, report.html


@pytest.mark.slow
def test_a_well_separated_classifier_gets_no_near_tie_explanation(tmp_path, capsys):
    figures, said, reference, int8 = _near_tie_build(unseen_models.well_separated(tmp_path), tmp_path / "out",
                                                     capsys)
    top2 = np.sort(reference, axis=1)[:, -2:]
    assert np.median(top2[:, 1] - top2[:, 0]) > 0.3  # confident: its best class far ahead of the next
    assert figures["disagreements"] == int((reference.argmax(1) != int8.argmax(1)).sum())
    assert figures["agreement"] >= 0.98
    assert "near-ties" not in said


@pytest.mark.slow
def test_compare_feeds_token_ids_in_the_models_own_integer_dtype(tmp_path, capsys):
    # Before: compare described each input by its shape alone, so the ids went through float32: fractional ids
    # were cut to whole ones without a word, and a float model of the same input shape passed as comparable.
    import tensorflow as tf

    from edgequant.cli import main

    made = unseen_models.embed_int64(tmp_path)
    code, _ = _quantize(made, tmp_path / "out", modes=("--int8",))
    assert code == 0, capsys.readouterr().err[-800:]
    float32, int8 = tmp_path / "out" / "float32.tflite", tmp_path / "out" / "int8.tflite"
    capsys.readouterr()
    assert main(["compare", str(float32), str(int8), "--data", str(made.eval), "--json"]) == 0
    compared = list(json.loads(capsys.readouterr().out).values())[1]
    ids = np.load(made.eval)
    assert ids.dtype == np.int64
    reference = _litert(float32, ids)
    assert compared["agreement"] == pytest.approx(float((_litert(int8, ids).argmax(1) == reference.argmax(1)).mean()))

    np.save(tmp_path / "fractions.npy", ids.astype(np.float32) + 0.5)
    assert main(["compare", str(float32), str(int8), "--data", str(tmp_path / "fractions.npy")]) == 2
    line = [x for x in capsys.readouterr().err.splitlines() if x.startswith("edgequant: error:")]
    assert len(line) == 1 and "takes int64 values" in line[0] and "fractions" in line[0], line

    keras = unseen_models._keras()
    inputs = keras.Input((unseen_models.STEPS,))
    floats = tmp_path / "floats.tflite"
    floats.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        keras.Model(inputs, keras.layers.Dense(unseen_models.TEXT_CLASSES, activation="softmax")(inputs))).convert())
    assert main(["compare", str(float32), str(floats), "--data", str(made.eval)]) == 2
    err = capsys.readouterr().err
    assert f"take different inputs: [{unseen_models.STEPS}] int64 against [{unseen_models.STEPS}] float32" in err, err
