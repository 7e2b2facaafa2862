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
