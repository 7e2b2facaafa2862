"""ONNX in and out, when the ONNX side cannot do what the build asks (issue 24 items 8 and 9)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import REPO
from tests.test_bad_input_matrix import run

pytest.importorskip("onnxruntime")


def _data(folder):
    np.save(folder / "x.npy", np.random.default_rng(0).random((40, 4), dtype=np.float32))


@pytest.mark.slow
def test_an_onnx_model_with_batch_size_1_is_checked_sample_by_sample(tmp_path, capsys):
    """Item 8: the onnxruntime check sent 32 samples at once to a model that takes exactly 1: exit 4."""
    pytest.importorskip("onnx2tf")
    (tmp_path / "m.onnx").write_bytes((REPO / "tests" / "fuzz_corpus" / "onnx" / "matmul_batch1.onnx").read_bytes())
    _data(tmp_path)
    (tmp_path / "r.yaml").write_text("model: {path: m.onnx}\nevaluation: {source: {type: npy, path: x.npy}}\n"
                                     "benchmark: {enabled: false}\nvariants: [{name: float32, mode: float32}]\n")
    code, errors = run(capsys, ["build", tmp_path / "r.yaml", "-o", tmp_path / "out"])
    assert (code, errors) == (0, [])
    check = json.loads((tmp_path / "out" / "report.json").read_text())["onnx_source_check"]
    assert check["samples"] == 32 and check["passed"] and check["max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_a_failed_onnx_export_costs_that_file_only(tmp_path, capsys):
    """Item 9: tf2onnx exits 0 but leaves BitwiseXor (ONNX has it from opset 18) in an opset-17 graph;
    onnxruntime refuses the file. The build lost everything (exit 4); now the .tflite commits and the
    report says which .onnx is missing and why."""
    pytest.importorskip("tf2onnx")
    import tensorflow as tf

    class XorModel(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="input")])
        def serve(self, x):
            return {"y": x + tf.cast(tf.bitwise.bitwise_xor(tf.cast(x * 10, tf.int32), 3), tf.float32)}

    model = XorModel()
    tf.saved_model.save(model, str(tmp_path / "xor"), signatures={"serving_default": model.serve})
    _data(tmp_path)
    (tmp_path / "r.yaml").write_text("model: {path: xor}\nevaluation: {source: {type: npy, path: x.npy}}\n"
                                     "benchmark: {enabled: false}\nformats: [tflite, onnx]\n"
                                     "variants: [{name: float32, mode: float32}]\n")
    code, errors = run(capsys, ["build", tmp_path / "r.yaml", "-o", tmp_path / "out"])
    assert (code, errors) == (0, [])
    out = tmp_path / "out"
    assert (out / "float32.tflite").is_file() and not (out / "float32.onnx").exists()
    report = json.loads((out / "report.json").read_text())
    [warning] = [w for w in report["warnings"] if "float32.onnx" in w]
    assert "not written: onnxruntime cannot load tf2onnx's float32 ONNX model" in warning and "BitwiseXor" in warning
    assert json.loads((out / "manifest.json").read_text()).get("onnx_artifacts", []) == []
