"""The demo app's arithmetic in Python: preprocess, quantize, dequantize, top-k.

The Kotlin core (android_demo/core/src/main/kotlin/dev/edgequant/core/Quantization.kt, Stats.kt)
does the same operations in the same order, in float32, so both give the same bytes and the
same ranking; tests/test_android_logic.py checks it on real Fashion-MNIST images.

Rounding: quantization is `edgequant.model.runtime.quantize_input`, i.e.
q = clip(np.round(x / scale + zero_point)): round half to even, zero point added before rounding.
Top-k: highest score first, equal scores by lower index, NaN last (`np.argsort(-s, kind="stable")`).
"""

from __future__ import annotations

import numpy as np

from edgequant.android.app_manifest import AppPreprocess
from edgequant.model.runtime import dequantize_output, quantize_input


def _detail(tensor: dict) -> dict:
    """An app-manifest tensor entry as the interpreter-style detail that `edgequant.model.runtime` takes."""
    q = tensor.get("quantization")
    scale, zero_point = (q["scale"][0], q["zero_point"][0]) if q else (0.0, 0)
    return {"dtype": np.dtype(tensor["dtype"]), "quantization": (float(scale), int(zero_point))}


def normalize(raw: np.ndarray, preprocess: AppPreprocess, input_shape: list[int]) -> np.ndarray:
    """One raw sample as float32 model input values, shaped like the input tensor."""
    x = np.asarray(raw).astype(np.float32).reshape(input_shape)
    x = x * np.float32(preprocess.scale)
    channel_axis = len(input_shape) - 1 if preprocess.layout == "nhwc" else 1
    mean = np.asarray(preprocess.mean, dtype=np.float32)
    std = np.asarray(preprocess.std, dtype=np.float32)
    if mean.size > 1 or std.size > 1:
        shape = [1] * len(input_shape)
        shape[channel_axis] = input_shape[channel_axis]
        mean = mean.reshape(shape) if mean.size > 1 else mean.reshape(())
        std = std.reshape(shape) if std.size > 1 else std.reshape(())
    else:
        mean, std = mean.reshape(()), std.reshape(())
    return ((x - mean) / std).astype(np.float32, copy=False)


def prepare_input(raw: np.ndarray, preprocess: AppPreprocess, tensor: dict) -> np.ndarray:
    """The input tensor's values (its dtype and shape) for one raw sample, as the app computes them."""
    x = normalize(raw, preprocess, tensor["shape"])
    return quantize_input(x, _detail(tensor))


def dequantize(values: np.ndarray, tensor: dict) -> np.ndarray:
    """An output tensor's values as float32 scores."""
    q = tensor.get("quantization")
    if q and len(q["scale"]) > 1:
        raise ValueError(f"output {tensor['name']!r} is quantized per channel; the app reads its first output per tensor")
    return dequantize_output(np.asarray(values), _detail(tensor))


def top_k(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """(index, score) of the k highest scores: ties by lower index, NaN last."""
    flat = np.asarray(scores, dtype=np.float32).reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    return [(int(i), float(flat[i])) for i in order]
