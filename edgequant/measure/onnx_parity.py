"""The float32 .tflite converted from an ONNX model, checked against the ONNX model itself in onnxruntime."""

from __future__ import annotations

import numpy as np

from edgequant.extras import require
from edgequant.measure.evaluate import BatchRunner
from edgequant.model.onnx_import import OnnxSource

# float32 TFLite against onnxruntime: both run float32 kernels that sum in different orders.
PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-3
PARITY_SAMPLES = 32


def check_against_onnxruntime(source: OnnxSource, tflite: bytes, samples: list[np.ndarray]) -> dict:
    """Run the float32 .tflite (NHWC) and the original ONNX model (its own layout) on the same samples."""
    ort = require("onnxruntime", "onnx", "checking an ONNX model")
    session = ort.InferenceSession(source.path, providers=["CPUExecutionProvider"])
    x = np.stack(samples).astype(np.float32)
    batch = session.get_inputs()[0].shape[0]  # an int when the model fixes its batch size (often 1), else a name
    if isinstance(batch, int) and batch > 0:
        x = x[: max(batch, len(x) // batch * batch)] if len(x) >= batch else np.resize(x, (batch, *x.shape[1:]))
        chunks = [source.to_onnx_layout(x[i : i + batch]) for i in range(0, len(x), batch)]
    else:
        chunks = [source.to_onnx_layout(x)]
    expected = np.concatenate([session.run(None, {source.input_name: c})[0] for c in chunks])
    got = BatchRunner(tflite)(x)
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    n = len(x)
    flat_got, flat_exp = got.reshape(n, -1), expected.reshape(n, -1)
    close = bool(np.allclose(got, expected, atol=PARITY_ATOL, rtol=PARITY_RTOL))
    return {
        "runtime": f"onnxruntime {ort.__version__}",
        "samples": n,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "top1_agreement": float((flat_got.argmax(1) == flat_exp.argmax(1)).mean()) if flat_got.shape[1] > 1 else None,
        "atol": PARITY_ATOL,
        "rtol": PARITY_RTOL,
        "passed": close,
    }
