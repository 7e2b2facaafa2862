"""`edgequant build` end to end on the real Fashion-MNIST example, and what it writes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edgequant.data.stream import InputSpec, iter_batches
from edgequant.measure.evaluate import evaluate
from edgequant.model.source_model import file_sha256
from edgequant.model.tflite_file import read_tflite
from edgequant.recipe.schema import DataSpec
from tests.conftest import FMNIST_MODEL

FMNIST_TEST = DataSpec.model_validate(
    {"source": {"type": "fashion-mnist", "split": "test"}, "preprocess": {"scale": 1 / 255}}
)


def test_every_post_training_mode_is_built(fmnist_build):
    assert [a.name for a in fmnist_build.artifacts] == ["float32", "float16", "dynamic", "int8", "int16x8"]
    for a in fmnist_build.artifacts:
        assert fmnist_build.path(a.name).is_file()


def test_int8_is_at_most_30_percent_of_float32(fmnist_build):
    ratio = fmnist_build.artifact("int8").size_bytes / fmnist_build.artifact("float32").size_bytes
    assert ratio <= 0.30, f"int8 is {ratio:.1%} of float32"


def test_int8_tensors_are_really_int8(fmnist_int8_tflite):
    model = read_tflite(fmnist_int8_tflite)
    assert [t.dtype for t in model.inputs] == ["int8"] and [t.dtype for t in model.outputs] == ["int8"]
    dtypes = {t.dtype for t in model.tensors}
    assert "float32" not in dtypes and "float16" not in dtypes, dtypes
    for t in model.tensors:
        if t.dtype == "int32" and t.quantization is None:
            assert len(t.shape) <= 1 and np.prod(t.shape) <= 4, t  # shape arithmetic of Flatten, not data
        elif t.dtype == "int32":
            assert t.is_constant and len(t.shape) == 1, t  # biases are int32 by design of int8 kernels
        else:
            assert t.dtype == "int8" and t.quantization is not None, t
    assert "DEQUANTIZE" not in model.op_counts() and "QUANTIZE" not in model.op_counts()
    conv = next(t for t in model.tensors if t.is_constant and t.dtype == "int8" and len(t.shape) == 4)
    assert conv.quantization.per_channel  # per-channel weight scales: the recipe's default


def test_float16_and_dynamic_weights(fmnist_build):
    f16 = read_tflite(fmnist_build.path("float16"))
    assert f16.tensor_dtypes(constant=True)["float16"] >= 4  # conv and dense kernels
    dyn = read_tflite(fmnist_build.path("dynamic"))
    assert dyn.tensor_dtypes(constant=True)["int8"] >= 2 and dyn.inputs[0].dtype == "float32"
    i16 = read_tflite(fmnist_build.path("int16x8"))
    assert i16.tensor_dtypes(constant=False)["int16"] > 0


@pytest.mark.slow
def test_int8_accuracy_within_one_point_of_float32_on_10k_test_images(fmnist_build):
    models = {name: fmnist_build.path(name) for name in ("float32", "int8")}
    results = evaluate(models, iter_batches(FMNIST_TEST, InputSpec("image", (28, 28, 1)), 1000), reference="float32")
    assert results["float32"].samples == 10_000
    assert results["float32"].top1 > 0.88  # the shipped model's measured accuracy is 90.6%
    assert abs(results["int8"].top1 - results["float32"].top1) <= 0.01


def test_manifest_traces_each_artifact_to_its_parent(fmnist_build):
    manifest = json.loads((fmnist_build.output_dir / "manifest.json").read_text())
    assert manifest["source_model"]["sha256"] == file_sha256(FMNIST_MODEL)
    assert manifest["recipe"]["sha256"] == fmnist_build.report.recipe["sha256"]
    assert len(manifest["recipe"]["sha256"]) == 64
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert set(by_name) == {"float32", "float16", "dynamic", "int8", "int16x8"}
    for name, entry in by_name.items():
        data = (fmnist_build.output_dir / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size_bytes"] == len(data)
        assert entry["inputs"][0]["shape"] == [1, 28, 28, 1]
    q_in = by_name["int8"]["inputs"][0]["quantization"]
    assert q_in["scale"][0] == pytest.approx(1 / 255, rel=0.01)  # calibrated on inputs in [0, 1]
    assert q_in["zero_point"] == [-128]
    assert by_name["float32"]["inputs"][0]["quantization"] is None
    for entry in by_name.values():  # each artifact's own record, which push reads
        provenance = entry["provenance"]
        assert provenance["recipe"]["sha256"] == manifest["recipe"]["sha256"]
        assert provenance["source_model"]["sha256"] == manifest["source_model"]["sha256"]
        assert provenance["preprocess"]["scale"] == pytest.approx(1 / 255)
        assert provenance["labels"][0] == "T-shirt/top" and len(provenance["labels"]) == 10
    assert by_name["int8"]["provenance"]["calibration"] == "fashion-mnist/train, 500 samples"
    assert by_name["float16"]["provenance"]["calibration"] is None


def test_int8_runs_in_litert_and_agrees_with_float(fmnist_build, fmnist_test_set):
    x, _ = fmnist_test_set
    models = {n: fmnist_build.path(n) for n in ("float32", "int8", "int16x8", "float16", "dynamic")}
    batches = [(x[:200], None)]
    results = evaluate(models, batches, reference="float32")
    for name, r in results.items():
        assert r.samples == 200
        assert r.agreement >= 0.97, (name, r.agreement)
        assert r.cosine > 0.99, (name, r.cosine)
