"""The int8 grid TFLiteConverter puts a linear layer's weights on, computed before converting.

The converter folds a following BatchNormalization into the kernel (kernel * gamma /
sqrt(variance + epsilon) per output channel) and quantizes the folded kernel symmetrically
to [-127, 127], one scale per output channel (max |w| / 127) or one per tensor. Bias
correction needs the rounding error this will make; adaptive rounding chooses the rounding
itself and writes weights that already lie on this grid, so the converter's rounding is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from edgequant.int8_fixes.graph import linear_kind

WEIGHT_LEVELS = 127  # TFLite int8 weights are symmetric in [-127, 127]


@dataclass
class WeightGrid:
    """A layer's folded kernel with output channels last, flattened to (inputs per channel, channels)."""

    layer: object
    folded: np.ndarray  # (n, channels), float64
    scale: np.ndarray  # (channels,)
    factor: np.ndarray  # (channels,): the BatchNorm factor folded in (ones without BatchNorm)

    def nearest(self) -> np.ndarray:
        return np.clip(np.round(self.folded / self.scale), -WEIGHT_LEVELS, WEIGHT_LEVELS)

    def write(self, levels: np.ndarray) -> None:
        """Set the layer's kernel so that folding gives `levels * scale` exactly (up to float32 rounding)."""
        kernel = levels * self.scale / self.factor
        self.layer.kernel.assign(unflatten(self.layer, kernel).astype(np.float32))


def following_bn(graph, name: str):
    """The BatchNormalization the converter folds into layer `name`, or None."""
    reader = graph.only_consumer(name)
    layer = graph.layers.get(reader) if reader else None
    fused = getattr(graph.layers[name], "activation", None)
    if isinstance(layer, keras.layers.BatchNormalization) and getattr(fused, "__name__", "linear") == "linear":
        return layer if layer.beta is not None else None
    return None


def weight_grid(layer, bn, per_channel: bool) -> WeightGrid:
    kernel = np.asarray(layer.kernel, dtype=np.float64)
    flat = flatten(layer, kernel)
    factor = np.ones(flat.shape[1])
    if bn is not None:
        gamma = np.asarray(bn.gamma, dtype=np.float64) if bn.gamma is not None else 1.0
        factor = gamma / np.sqrt(np.asarray(bn.moving_variance, dtype=np.float64) + bn.epsilon)
    folded = flat * factor
    if per_channel:
        scale = np.abs(folded).max(axis=0) / WEIGHT_LEVELS
    else:
        scale = np.full(folded.shape[1], np.abs(folded).max() / WEIGHT_LEVELS)
    return WeightGrid(layer, folded, np.where(scale > 0, scale, 1.0), factor)


def flatten(layer, kernel: np.ndarray) -> np.ndarray:
    """(kh, kw, cin, cout) -> (kh*kw*cin, cout); depthwise (kh, kw, c, 1) -> (kh*kw, c); dense as is."""
    if linear_kind(layer) == "depthwise":
        return kernel[..., 0].reshape(-1, kernel.shape[2])
    return kernel.reshape(-1, kernel.shape[-1])


def unflatten(layer, flat: np.ndarray) -> np.ndarray:
    shape = tuple(layer.kernel.shape)
    if linear_kind(layer) == "depthwise":
        return flat.reshape(shape[:3])[..., None]
    return flat.reshape(shape)
