"""Empirical bias correction (Nagel et al., ICCV 2019, section 4.2), on a Keras 3 model's weights.

Rounding a layer's weights to int8 adds an error whose mean over the data is not zero:
a per-channel shift of the layer's output that the layers after it do not expect, and
that grows as it passes through the network's nonlinearities. It is measured before
quantizing: a copy of the model gets its weights rounded as the converter will round them
(symmetric int8 in [-127, 127], one scale per output channel or per tensor, BatchNorm
folded in). Layer by layer, in graph order, the copy's mean output per channel on the
calibration data is compared with the float model's, and the difference is subtracted
from that layer's bias (or its BatchNorm's beta) in both, so each layer is corrected for
its own rounding and for what the layers before it still shift.

This deliberately moves the float function by the expected rounding error, so it is
reported, not held to equivalence: the float model's outputs change by about what int8's
weight rounding would change them by, in the other direction.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from edgequant.int8_fixes.graph import layer_outputs, linear_kind, model_graphs

WEIGHT_LEVELS = 127  # TFLite int8 weights are symmetric in [-127, 127]


@dataclass(frozen=True)
class Correction:
    layer: str
    max_shift: float  # the largest per-channel correction, in output units

    def to_dict(self) -> dict:
        return {"layer": self.layer, "max_shift": self.max_shift}


def correct_biases(model, samples: np.ndarray, per_channel: bool) -> list[Correction]:
    """Correct `model`'s biases in place for the weight rounding int8 will do; returns the corrections."""
    rounded = keras.models.clone_model(model, recursive=True)
    rounded.set_weights(model.get_weights())
    graphs, rounded_graphs = model_graphs(model), model_graphs(rounded)
    targets = list(_in_order(model, graphs))
    for index, name, bn in targets:
        graph = rounded_graphs[index]
        layer = graph.layers[name]
        layer.kernel.assign(_rounded_kernel(layer, graph.layers[bn] if bn else None, per_channel))
    probes: dict[int, list[str]] = {}
    for index, name, bn in targets:
        probes.setdefault(index, []).append(bn or name)
    float_means = _means(layer_outputs(graphs, probes, samples))
    corrections = []
    for index, name, bn in targets:
        probe = (index, bn or name)
        shift = _means(layer_outputs(rounded_graphs, {index: [probe[1]]}, samples))[probe] - float_means[probe]
        for g in (graphs[index], rounded_graphs[index]):
            holder, attr = (g.layers[bn], "beta") if bn else (g.layers[name], "bias")
            variable = getattr(holder, attr)
            variable.assign(np.asarray(variable) - shift.astype(np.float32))
        corrections.append(Correction(name, float(np.abs(shift).max())))
    return corrections


def _in_order(model, graphs):
    """(graph index, layer, its BatchNorm or None) for every correctable layer, in the order data reaches them."""
    index = next(i for i, g in enumerate(graphs) if g.model is model)
    graph = graphs[index]
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _in_order(layer, graphs)
            continue
        if linear_kind(layer) is None:
            continue
        bn = _following_bn(graph, layer.name)
        if bn is not None:
            yield index, layer.name, bn.name
        elif layer.bias is not None:
            yield index, layer.name, None


def _means(batches) -> dict:
    """Per (graph, layer) key, the mean of each channel over every sample and position."""
    sums: dict = {}
    counts: dict = {}
    for batch in batches:
        for key, y in batch.items():
            flat = y.reshape(-1, y.shape[-1])
            sums[key] = sums.get(key, 0.0) + flat.sum(axis=0, dtype=np.float64)
            counts[key] = counts.get(key, 0) + len(flat)
    return {key: total / counts[key] for key, total in sums.items()}


def _following_bn(graph, name: str):
    reader = graph.only_consumer(name)
    layer = graph.layers.get(reader) if reader else None
    fused = getattr(graph.layers[name], "activation", None)
    if isinstance(layer, keras.layers.BatchNormalization) and getattr(fused, "__name__", "linear") == "linear":
        return layer if layer.beta is not None else None
    return None


def _rounded_kernel(layer, bn, per_channel: bool) -> np.ndarray:
    """The layer's kernel after int8 rounding of the folded kernel (BatchNorm's scale unfolded again)."""
    kernel = np.asarray(layer.kernel, dtype=np.float64)
    depthwise = linear_kind(layer) == "depthwise"
    factor = 1.0
    if bn is not None:
        gamma = np.asarray(bn.gamma) if bn.gamma is not None else 1.0
        factor = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
        factor = np.where(factor != 0, factor, 1.0)
        factor = factor[:, None] if depthwise else factor
    folded = kernel * factor
    per_out = np.moveaxis(folded, 2, -1) if depthwise else folded  # output channel last
    channels = per_out.shape[-1]
    if per_channel:
        scale = np.abs(per_out.reshape(-1, channels)).max(axis=0) / WEIGHT_LEVELS
    else:
        scale = np.full(channels, np.abs(folded).max() / WEIGHT_LEVELS)
    scale = np.where(scale > 0, scale, 1.0)
    rounded = np.clip(np.round(per_out / scale), -WEIGHT_LEVELS, WEIGHT_LEVELS) * scale
    return ((np.moveaxis(rounded, -1, 2) if depthwise else rounded) / factor).astype(np.float32)
