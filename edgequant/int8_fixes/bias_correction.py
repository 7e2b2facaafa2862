"""Empirical bias correction (Nagel et al., ICCV 2019, section 4.2), on a Keras 3 model's weights.

Rounding a layer's weights to int8 adds an error whose mean over the data is not zero:
E[(Q(W) - W) x] is a per-channel shift of the layer's output that the layers after it
do not expect. It is known before quantizing: quantize the weights as the converter will
(symmetric int8, [-127, 127], one scale per output channel or per tensor, BatchNorm folded
in), run the layer with the rounding error as its kernel on its float inputs from the
calibration data, and subtract the mean from the layer's bias (or its BatchNorm's beta).

This deliberately moves the float function by the expected rounding error, so it is
reported, not held to equivalence: the float model's outputs change by about what int8's
weight rounding would change them by, in the other direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from edgequant.int8_fixes.budget import SkippedLayer, too_big
from edgequant.int8_fixes.budget import memory_budget as default_budget
from edgequant.int8_fixes.graph import MODEL_INPUT, layer_outputs, linear_kind, model_graphs
from edgequant.int8_fixes.weight_grid import following_bn, unflatten, weight_grid

GRID_ARRAYS = 5  # float64 arrays of a layer's weight count while its rounding error is computed (weight_grid)


@dataclass(frozen=True)
class Correction:
    layer: str
    max_shift: float  # the largest per-channel correction, in output units

    def to_dict(self) -> dict:
        return {"layer": self.layer, "max_shift": self.max_shift}


def correct_biases(model, samples: np.ndarray, per_channel: bool, memory_budget: int | None = None
                   ) -> tuple[list[Correction], list[SkippedLayer]]:
    """Correct `model`'s biases in place for the weight rounding int8 will do; returns the corrections, and the
    layers left alone because their rounding errors (held for every layer at once, float32) and one layer's
    float64 weight grid would exceed `memory_budget` bytes (default: budget.memory_budget())."""
    budget = memory_budget if memory_budget is not None else default_budget()
    graphs = model_graphs(model)
    targets = []  # (graph index, layer, where the bias lives, input name)
    skipped, held = [], 0
    for index, graph in enumerate(graphs):
        for name, layer in graph.layers.items():
            kind = linear_kind(layer)
            if kind is None:
                continue
            bn = following_bn(graph, name)
            if bn is None and layer.bias is None:
                continue  # nowhere to put a correction
            producers = graph.producers.get(name, [])
            if len(producers) > 1:
                continue
            weights = int(np.prod(layer.kernel.shape))
            over = too_big("bias_correction", layer.name, held + 4 * weights + GRID_ARRAYS * 8 * weights, budget)
            if over is not None:
                skipped.append(over)
                continue
            held += 4 * weights
            targets.append((index, layer, bn, producers[0] if producers else MODEL_INPUT))
    names: dict[int, list[str]] = {}
    for index, _, _, source in targets:
        names.setdefault(index, [])
        if source not in names[index]:
            names[index].append(source)
    errors = {id(layer): _rounding_error(layer, bn, per_channel) for _, layer, bn, _ in targets}
    sums = {id(layer): 0.0 for _, layer, _, _ in targets}
    count = 0
    for batch in layer_outputs(graphs, names, samples):
        for index, layer, _, source in targets:
            y = np.asarray(_apply(layer, batch[(index, source)], errors[id(layer)]))
            sums[id(layer)] = sums[id(layer)] + y.reshape(-1, y.shape[-1]).mean(axis=0) * len(y)
        count += len(next(iter(batch.values())))
    corrections = []
    for _, layer, bn, _ in targets:
        shift = sums[id(layer)] / count  # in the units of the folded output (after BatchNorm)
        if bn is not None:
            bn.beta.assign(np.asarray(bn.beta) - shift.astype(np.float32))
        else:
            layer.bias.assign(np.asarray(layer.bias) - shift.astype(np.float32))
        corrections.append(Correction(layer.name, float(np.abs(shift).max())))
    return corrections, skipped


def _rounding_error(layer, bn, per_channel: bool) -> np.ndarray:
    """Q(W) - W for the folded kernel, as the kernel of the folded layer (output units after BatchNorm)."""
    grid = weight_grid(layer, bn, per_channel)
    return unflatten(layer, grid.nearest() * grid.scale - grid.folded).astype(np.float32)


def _apply(layer, x: np.ndarray, kernel: np.ndarray):
    """The layer's linear part with `kernel`, no bias and no activation."""
    kind = linear_kind(layer)
    if kind == "dense":
        return x.reshape(-1, x.shape[-1]) @ kernel
    if kind == "depthwise":
        return keras.ops.depthwise_conv(x, kernel, strides=layer.strides, padding=layer.padding,
                                        data_format=layer.data_format, dilation_rate=layer.dilation_rate)
    return layer.convolution_op(x, kernel)
