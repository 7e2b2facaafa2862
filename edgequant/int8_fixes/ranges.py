"""Activation range setting: percentile or MSE-optimal clipping instead of TFLiteConverter's min/max.

The converter calibrates in two steps that TF exposes: with `_experimental_calibrate_only`
it returns the float model with each activation tensor's observed min/max recorded
(the same step `tf.lite.experimental.QuantizationDebugger` uses), and `mlir_quantize`
turns such a model into the int8 one, exactly as `convert()` does next. Between the two,
this module runs that calibrated float model on the calibration data, keeps a sample of
each activation tensor's values, and rewrites the recorded min/max:

- `percentile`: [P(100 - p), P(p)] of the values, so a few outliers no longer stretch the
  range (and the step) for everything else;
- `mse`: the range, shrunk by a factor chosen on a grid, that minimizes the mean squared
  error of 8-bit rounding and clipping on the values.

Ranges only shrink, never grow, and the model's input and output tensors keep theirs.
The result is still one ordinary full-integer model (no op changes: only scales move).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

VALUES_PER_SAMPLE = 2048  # values kept per tensor and sample (fewer if over the memory budget, budget.py): enough
# for a 99.99th percentile over hundreds
SHRINK_GRID = np.linspace(0.2, 1.0, 41)  # candidate fractions of the min/max range for `mse`
LEVELS = 255


@dataclass(frozen=True)
class RangeChange:
    tensor: str
    old: tuple[float, float]
    new: tuple[float, float]

    def to_dict(self) -> dict:
        return {"tensor": self.tensor, "old": list(self.old), "new": list(self.new)}


def set_ranges(calibrated: bytes, samples: Callable[[], Iterator[np.ndarray]], method: str, percentile: float
               ) -> tuple[bytes, list[RangeChange]]:
    """`calibrated` (a calibrate-only model) with its activation min/max rewritten by `method`."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    graph = model.subgraphs[0]
    boundary = set(graph.inputs) | set(graph.outputs)
    recorded = {
        i: t for i, t in enumerate(graph.tensors)
        if i not in boundary and t.quantization is not None and t.quantization.min is not None
        and len(t.quantization.min) == 1 and model.buffers[t.buffer].data is None
    }
    values = _activation_samples(calibrated, samples, list(recorded))
    changes = []
    for index, tensor in recorded.items():
        lo, hi = float(tensor.quantization.min[0]), float(tensor.quantization.max[0])
        v = values[index]
        if method == "percentile":
            new_lo = max(lo, float(np.percentile(v, 100 - percentile))) if lo < 0 else lo
            new_hi = min(hi, float(np.percentile(v, percentile))) if hi > 0 else hi
        else:
            new_lo, new_hi = _mse_range(v, lo, hi)
        if (new_lo, new_hi) != (lo, hi):
            tensor.quantization.min, tensor.quantization.max = [new_lo], [new_hi]
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
            changes.append(RangeChange(name, (lo, hi), (new_lo, new_hi)))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), changes


def _mse_range(v: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    best, best_err = (lo, hi), np.inf
    for a in SHRINK_GRID:
        qlo, qhi = min(lo * a, 0.0), max(hi * a, 0.0)
        step = (qhi - qlo) / LEVELS
        if step <= 0:
            continue
        q = np.clip(np.round((v - qlo) / step), 0, LEVELS) * step + qlo
        err = float(np.mean((q - v) ** 2))
        if err < best_err:
            best, best_err = (qlo, qhi), err
    return best


def _activation_samples(model: bytes, samples: Callable[[], Iterator[np.ndarray]], tensors: list[int]
                        ) -> dict[int, np.ndarray]:
    from edgequant.int8_fixes.budget import memory_budget
    from edgequant.model.runtime import _interpreter_module

    interp = _interpreter_module().Interpreter(model_content=model, experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    detail = interp.get_input_details()[0]
    rng = np.random.default_rng(0)
    count = sum(1 for _ in samples())
    # every tensor's values of every sample are held at once: within the fixes' memory budget (float32)
    per_sample = max(1, min(VALUES_PER_SAMPLE, memory_budget() // (4 * max(len(tensors), 1) * max(count, 1))))
    kept: dict[int, list[np.ndarray]] = {i: [] for i in tensors}
    for x in samples():
        interp.set_tensor(detail["index"], np.asarray(x, dtype=np.float32)[None])
        interp.invoke()
        for i in tensors:
            flat = interp.get_tensor(i).ravel()
            if flat.size > per_sample:
                flat = flat[rng.integers(0, flat.size, per_sample)]
            kept[i].append(flat.astype(np.float32))
    return {i: np.concatenate(v) for i, v in kept.items()}
