"""Adaptive rounding of int8 weights (after Nagel et al., "Up or Down? Adaptive Rounding for Post-Training
Quantization", ICML 2020), on a Keras 3 model's weights.

Rounding each weight to its nearest int8 level is not what keeps a layer's output closest to
float: errors of neighbouring weights can add up or cancel on the data. AdaRound chooses, per
weight, to round up or down so as to minimize the layer's output error on calibration data,
E ||(W~ - W) x||^2 = sum over output channels of e^T M e, with e the channel's rounding errors
and M the second moment of its inputs (im2col patches for a conv, one channel's patches for a
depthwise conv). Nagel et al. relax the choice to a continuous one and anneal it; here the
same objective is minimized directly over the up/down choices, by coordinate descent from
nearest rounding (a flip is kept only if it lowers the objective, so the result is never worse
than nearest rounding on the calibration data), layer by layer with float inputs.

The rounded weights are written on the grid the converter will use (weight_grid.py), with
each channel's largest weight left in place so that the converter derives the same scale,
and its own rounding then reproduces the chosen levels exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgequant.int8_fixes.budget import SkippedLayer, too_big
from edgequant.int8_fixes.budget import memory_budget as default_budget
from edgequant.int8_fixes.graph import MODEL_INPUT, layer_outputs, linear_kind, model_graphs
from edgequant.int8_fixes.weight_grid import WEIGHT_LEVELS, WeightGrid, following_bn, weight_grid

PASSES = 8  # coordinate-descent sweeps per layer; they stop early once no flip helps
PATCHES_PER_BATCH = 4096  # input patches of a batch that estimate a layer's input second moment (a random subset)
PATCHES_PER_INPUT = 8  # a layer is rounded only with at least this many patches per input of an output channel
BATCH = 8  # samples per batch of layer outputs


@dataclass(frozen=True)
class Rounding:
    layer: str
    flipped: int  # weights rounded the other way than nearest
    error_before: float  # E ||(W~ - W) x||^2 per output element with nearest rounding
    error_after: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "flipped": self.flipped, "error_before": self.error_before,
                "error_after": self.error_after}


def adaround(model, samples: np.ndarray, per_channel: bool, memory_budget: int | None = None
             ) -> tuple[list[Rounding], list[SkippedLayer]]:
    """Round every linear layer's weights of `model` in place onto its int8 grid; returns what changed, and the
    layers left to nearest rounding: too few input patches, or more working memory than `memory_budget` bytes
    (default: budget.memory_budget()).

    Both are decided from the layers' shapes before anything is allocated. The second moments of the layers
    rounded are accumulated in as many passes over the samples as it takes to keep them within the budget.
    """
    budget = memory_budget if memory_budget is not None else default_budget()
    graphs = model_graphs(model)
    targets, skipped = [], []  # targets: (graph index, layer, folded BatchNorm, input name, bytes it holds)
    for index, graph in enumerate(graphs):
        for name, layer in graph.layers.items():
            producers = graph.producers.get(name, [])
            if not linear_kind(layer) or len(producers) > 1:
                continue
            inputs, positions = _inputs_and_positions(layer)
            at_most = _patches_at_most(len(samples), positions)
            if at_most < PATCHES_PER_INPUT * inputs:  # rounding would fit the noise of too few patches
                skipped.append(SkippedLayer("adaround", layer.name, f"too few input patches to fit its {inputs:,} "
                                            f"inputs: at most {at_most:,} from {len(samples)} samples, needs "
                                            f"{PATCHES_PER_INPUT * inputs:,}"))
                continue
            held, peak = _memory(layer, inputs, positions)
            over = too_big("adaround", layer.name, held + peak, budget)
            if over is not None:
                skipped.append(over)
                continue
            targets.append((index, layer, following_bn(graph, name), producers[0] if producers else MODEL_INPUT,
                            held, peak))
    roundings = []
    for group in _groups(targets, budget):
        moments, count = _accumulate(graphs, group, samples)
        for _, layer, bn, _, _, _ in group:
            moment = moments.pop(id(layer))
            inputs = moment.shape[-1]
            if count[id(layer)] < PATCHES_PER_INPUT * inputs:  # fewer than the shapes promised (a dynamic size)
                skipped.append(SkippedLayer("adaround", layer.name, f"too few input patches to fit its {inputs:,} "
                                            f"inputs: {count[id(layer)]:,}, needs {PATCHES_PER_INPUT * inputs:,}"))
                continue
            moment /= count[id(layer)]
            grid = weight_grid(layer, bn, per_channel)
            levels, rounding = _round(grid, moment)
            grid.write(levels)
            roundings.append(rounding)
    return roundings, skipped


def _inputs_and_positions(layer) -> tuple[int, int | None]:
    """Inputs per output channel (the side of its second moment), and the patches one sample gives (None: any)."""
    kernel = tuple(layer.kernel.shape)
    kind = linear_kind(layer)
    inputs = kernel[0] * kernel[1] if kind == "depthwise" else int(np.prod(kernel[:-1]))
    try:
        shape = tuple(layer.output.shape if kind != "dense" else layer.input.shape)[1:-1]
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return inputs, None
    if any(d is None for d in shape):
        return inputs, None
    return inputs, int(np.prod(shape, dtype=np.int64))


def _patches_at_most(samples: int, positions: int | None) -> int:
    """The most patches the accumulation can see: each batch gives its patches, a random PATCHES_PER_BATCH at most."""
    full, rest = divmod(samples, BATCH)
    if positions is None:
        return (full + (rest > 0)) * PATCHES_PER_BATCH
    return full * min(BATCH * positions, PATCHES_PER_BATCH) + min(rest * positions, PATCHES_PER_BATCH)


def _memory(layer, inputs: int, positions: int | None) -> tuple[int, int]:
    """Bytes a layer holds through the accumulation (its float64 second moment), and its peak on top of them:
    one batch's patches and their product (float32), or the weight grids of the rounding (float64)."""
    kernel = tuple(layer.kernel.shape)
    channels = kernel[2] if linear_kind(layer) == "depthwise" else kernel[-1]
    if linear_kind(layer) == "depthwise":
        held = 8 * channels * inputs * inputs
        product = 4 * channels * inputs * inputs
    else:
        held = 8 * inputs * inputs
        product = 4 * inputs * inputs
    patches = 4 * BATCH * (positions or PATCHES_PER_BATCH) * inputs * (channels if linear_kind(layer) == "depthwise"
                                                                         else 1)
    rounding = 10 * 8 * inputs * channels  # folded, exact, levels, other, error, gradient, nearest... (_round)
    return held, max(product + 2 * patches, rounding)


def _groups(targets: list, budget: int) -> list[list]:
    """The targets in passes over the data whose held moments, plus the largest peak among them, fit the budget."""
    groups: list[list] = [[]]
    held = peak = 0
    for target in targets:
        if groups[-1] and held + target[4] + max(peak, target[5]) > budget:
            groups.append([])
            held = peak = 0
        groups[-1].append(target)
        held, peak = held + target[4], max(peak, target[5])
    return [g for g in groups if g]


def _accumulate(graphs, group: list, samples: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, int]]:
    """Per layer of `group` (by id), the summed second moment of its input patches, and how many patches."""
    names: dict[int, list[str]] = {}
    for index, _, _, source, _, _ in group:
        if source not in names.setdefault(index, []):
            names[index].append(source)
    moments: dict[int, np.ndarray] = {}
    count = {id(layer): 0 for _, layer, _, _, _, _ in group}
    rng = np.random.default_rng(0)
    for batch in layer_outputs(graphs, names, samples, batch=BATCH):
        for index, layer, _, source, _, _ in group:
            m, n = _second_moment(layer, batch[(index, source)], rng)
            if id(layer) in moments:
                moments[id(layer)] += m  # in place: a second n x n float64 array would double the peak
            else:
                moments[id(layer)] = m.astype(np.float64)
            count[id(layer)] += n
            del m
    return moments, count


def _second_moment(layer, x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Sum of p p^T over (a random subset of) the layer's input patches p in a batch, and how many patches.

    Shape (n, n) for conv and dense (shared by all output channels), (channels, n, n) for depthwise; float32.
    """
    import tensorflow as tf

    x = np.asarray(x, dtype=np.float32)
    kind = linear_kind(layer)
    if kind == "dense" or (kind == "conv" and tuple(layer.kernel_size) == (1, 1) and tuple(layer.strides) == (1, 1)):
        p = _subset(x.reshape(-1, x.shape[-1]), rng)
        return p.T @ p, len(p)
    kh, kw = layer.kernel_size
    sh, sw = layer.strides
    dh, dw = layer.dilation_rate
    patches = tf.image.extract_patches(x, sizes=[1, kh, kw, 1], strides=[1, sh, sw, 1], rates=[1, dh, dw, 1],
                                       padding=layer.padding.upper()).numpy()
    p = _subset(patches.reshape(-1, patches.shape[-1]), rng)
    del patches
    if kind == "depthwise":
        p = p.reshape(len(p), kh * kw, x.shape[-1]).transpose(2, 1, 0)  # (channels, n, patches)
        return p @ p.transpose(0, 2, 1), p.shape[2]
    return p.T @ p, len(p)


def _subset(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= PATCHES_PER_BATCH else rows[rng.choice(len(rows), PATCHES_PER_BATCH, replace=False)]


def _round(grid: WeightGrid, moment: np.ndarray) -> tuple[np.ndarray, Rounding]:
    """The levels minimizing sum_c e_c^T M e_c by coordinate descent over up/down, from nearest rounding."""
    exact = grid.folded / grid.scale
    levels = grid.nearest()
    other = np.clip(np.where(levels > exact, np.floor(exact), np.ceil(exact)), -WEIGHT_LEVELS, WEIGHT_LEVELS)
    # the largest weight of a channel sets its scale: it stays where it is (and so do weights already on the grid)
    movable = (np.abs(exact) < WEIGHT_LEVELS - 1e-6) & (other != levels)
    shared = moment.ndim == 2
    error = (levels - exact) * grid.scale
    gradient = moment @ error if shared else np.einsum("cij,jc->ic", moment, error)
    before = _objective(error, gradient)
    nearest = levels.copy()
    for _ in range(PASSES):
        flips = 0
        for i in range(len(levels)):
            step = (other[i] - levels[i]) * grid.scale
            diagonal = moment[i, i] if shared else moment[:, i, i]
            better = movable[i] & (2 * step * gradient[i] + step * step * diagonal < 0)
            if not better.any():
                continue
            step = np.where(better, step, 0.0)
            gradient += (moment[:, i:i + 1] if shared else moment[:, :, i].T) * step
            levels[i], other[i] = np.where(better, other[i], levels[i]), np.where(better, levels[i], other[i])
            flips += int(better.sum())
        if not flips:
            break
    error = (levels - exact) * grid.scale
    after = _objective(error, moment @ error if shared else np.einsum("cij,jc->ic", moment, error))
    return levels, Rounding(grid.layer.name, int((levels != nearest).sum()), before, after)


def _objective(error: np.ndarray, gradient: np.ndarray) -> float:
    """sum_c e_c^T M e_c, per output channel."""
    return float((error * gradient).sum() / error.shape[1])
