"""Per-layer estimates on simulated devices: counted instructions by TFLite node (real qemu, real LiteRT).

The counting plugin splits each invoke where the interpreter calls a node and
where XNNPACK starts an operator; these tests check that the split names every
node with the kernel that ran it and adds up to the whole-model figures.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from edgequant.report.schema import Report

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

needs_qemu = pytest.mark.skipif(shutil.which("qemu-aarch64") is None, reason="qemu-user is not installed")
pytestmark = [needs_qemu, pytest.mark.slow]


def _node_ops(model) -> dict[int, str]:
    """The model's own nodes (index -> TFLite op), read on the host without delegates."""
    from edgequant.model.runtime import load_interpreter

    return {o["index"]: o["op_name"] for o in load_interpreter(model, kernels="builtin")._get_ops_details()}


def _full_int8(model, path):
    """`model` converted to full-integer int8 (int8 input and output) at `path`. Random calibration data:
    the scales it picks do not change which kernels run."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    shape = (1, *model.input_shape[1:])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(2))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    path.write_bytes(converter.convert())
    return path


@pytest.fixture(scope="module")
def small_cnn(tmp_path_factory):
    """A small int8 CNN whose Flatten and int8 SOFTMAX XNNPACK leaves to the builtin kernels."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        tf.keras.layers.Conv2D(8, 3, activation="relu"),
        tf.keras.layers.DepthwiseConv2D(3, padding="same"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10),
        tf.keras.layers.Softmax(),
    ])
    return _full_int8(model, tmp_path_factory.mktemp("small_cnn") / "int8.tflite")


def test_devices_kernels_shows_the_layers_and_the_fallback(small_cnn, capsys):
    from edgequant.cli import main

    assert main(["devices", "kernels", str(small_cnn), "--device", "pixel4"]) == 0
    out = capsys.readouterr().out
    assert f"slowest layers of {len(_node_ops(small_cnn))}" in out
    conv = next(line for line in out.splitlines() if "#0 CONV_2D" in line)
    assert " ms " in conv and "XNNPACK xnn_qs8_qc8w_igemm" in conv
    softmax = next(line for line in out.splitlines() if "SOFTMAX" in line)
    assert "builtin" in softmax and "fallback: not delegated to XNNPACK" in softmax
    assert "runtime overhead: interpreter" in out


@pytest.mark.parametrize("kernels", ["xnnpack", "builtin"])
def test_every_node_is_counted_once_with_the_kernel_that_ran_it(small_cnn, kernels):
    from edgequant.devices.arm.runner import run_on_device

    run = run_on_device(small_cnn, "pixel4", kernels=kernels)
    nodes = [layer for layer in run.layers if layer.node is not None]
    overhead = [layer for layer in run.layers if layer.node is None]
    assert sum(layer.instructions for layer in run.layers) == run.instructions_per_invoke
    assert {layer.node: layer.op for layer in nodes} == _node_ops(small_cnn)  # each node once, in the model's order
    assert [layer.node for layer in nodes] == sorted(layer.node for layer in nodes)
    assert len(overhead) == 1 and overhead[0].instructions < 0.1 * run.instructions_per_invoke
    by_op = {layer.op: layer for layer in nodes}
    if kernels == "xnnpack":
        assert by_op["CONV_2D"].runtime == "xnnpack" and "igemm" in by_op["CONV_2D"].kernel
        assert "dwconv" in by_op["DEPTHWISE_CONV_2D"].kernel and "maxpool" in by_op["MAX_POOL_2D"].kernel
        assert "gemm" in by_op["FULLY_CONNECTED"].kernel
        softmax = by_op["SOFTMAX"]  # XNNPACK has no int8 softmax: the builtin kernel runs it
        assert softmax.runtime == "builtin" and softmax.fallback and "Softmax" in softmax.kernel
    else:
        assert all(layer.runtime == "builtin" and not layer.fallback for layer in nodes)
        assert "xnn_" not in " ".join(layer.kernel for layer in nodes)
    # the convolutions do most of the work, whichever kernels run them
    assert by_op["CONV_2D"].instructions + by_op["DEPTHWISE_CONV_2D"].instructions > 0.6 * run.instructions_per_invoke


def test_a_node_xnnpack_fuses_is_listed_without_instructions(tmp_path):
    """An asymmetric ZeroPadding2D stays a PAD node, which XNNPACK fuses into the next convolution."""
    import tensorflow as tf

    from edgequant.devices.arm.runner import run_on_device
    from edgequant.devices.layers import NO_OPERATOR

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.Sequential([
        tf.keras.Input((32, 32, 3)),
        tf.keras.layers.ZeroPadding2D(((1, 0), (1, 0))),
        tf.keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(4),
    ])
    path = _full_int8(model, tmp_path / "padded.tflite")
    ops = _node_ops(path)
    assert ops[0] == "PAD"
    run = run_on_device(path, "pixel4")
    layers = {layer.node: layer for layer in run.layers if layer.node is not None}
    assert {n: layer.op for n, layer in layers.items()} == ops
    assert layers[0].instructions == 0 and layers[0].kernel == NO_OPERATOR
    assert "igemm" in layers[1].kernel and layers[1].instructions > 10 * layers[3].instructions
    assert sum(layer.instructions for layer in run.layers) == run.instructions_per_invoke


@pytest.fixture(scope="module")
def mobilenet_v2_int8(tmp_path_factory):
    """keras.applications MobileNetV2 1.0 224 (weights=None) as full-integer int8."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None)
    return _full_int8(model, tmp_path_factory.mktemp("mnv2") / "mobilenet_v2_int8.tflite")


@pytest.mark.parametrize("device", ["rpi4", "pixel4"])
def test_mobilenet_v2_layers_add_up_and_name_op_and_kernel(mobilenet_v2_int8, device, capsys):
    from edgequant.cli import main
    from edgequant.devices.estimate import estimate_latency
    from edgequant.devices.layers import slowest

    est = estimate_latency(mobilenet_v2_int8, device)
    layers = [layer.to_dict() for layer in est.layers]
    assert sum(layer["latency_ms"] for layer in layers) == pytest.approx(est.latency_ms, rel=0.01)
    assert sum(layer["instructions"] for layer in layers) == est.instructions_per_invoke
    nodes = _node_ops(mobilenet_v2_int8)
    assert {layer["node"]: layer["op"] for layer in layers if layer["node"] is not None} == nodes
    overhead = next(layer for layer in layers if layer["node"] is None)
    assert overhead["share"] < 0.01  # what runs outside the operators is small for a model this size
    top = slowest(layers, 5)
    assert all(layer["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D") for layer in top), top
    assert all(layer["runtime"] == "xnnpack" and layer["kernel"].startswith("xnn_") and "ukernel" in layer["kernel"]
               for layer in top), top
    # the CLI shows them: op, layer name and kernel, next to the estimate
    assert main(["devices", "estimate", str(mobilenet_v2_int8), "--device", device]) == 0
    out = capsys.readouterr().out
    assert f"slowest layers of {len(nodes)}" in out
    first = top[0]
    assert f"#{first['node']} {first['op']}" in out and "XNNPACK xnn_qs8_qc8w_" in out
    assert "fallback: not delegated to XNNPACK" in out  # its int8 SOFTMAX runs on the builtin kernels
    assert "runtime overhead" in out


def test_build_report_shows_the_slowest_layers_per_device(fmnist_build):
    report = Report.model_validate_json((fmnist_build.output_dir / "report.json").read_text())
    md = (fmnist_build.output_dir / "report.md").read_text()
    html = (fmnist_build.output_dir / "report.html").read_text()
    for device in ("rpi4", "pixel4"):
        lat = next(x for x in report.variant("int8").latency if x.device == device)
        assert lat.layers and sum(x.latency_ms for x in lat.layers) == pytest.approx(lat.ms, rel=0.01)
        assert "layers" not in lat.details  # once, in its own field
        section = md.split(f"### {device}: ")[1].split("\n### ")[0]
        slowest_row = max((x for x in lat.layers if x.node is not None), key=lambda x: x.latency_ms)
        row = next(line for line in section.splitlines()
                   if line.startswith(f"| `int8` | #{slowest_row.node} {slowest_row.op} |"))
        assert slowest_row.kernel in row and f"{slowest_row.latency_ms:.3g}" in row
        assert f'id="device-layers-{device}"' in html
