"""Turn a raw sample into a model input, as the recipe's `preprocess` section declares."""

from __future__ import annotations

import numpy as np

from edgequant.recipe.schema import Preprocess


def preprocess(x: np.ndarray, spec: Preprocess) -> np.ndarray:
    """resize -> color -> float32 -> * scale -> (x - mean) / std -> layout. `x` is one HxWxC (or any) sample."""
    if spec.resize is not None or spec.color != "keep":
        x = _resize_and_color(x, spec)
    x = x.astype(np.float32) * np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (x - mean) / std
    if spec.layout == "nchw" and x.ndim == 3:
        x = np.transpose(x, (2, 0, 1))
    return np.ascontiguousarray(x, dtype=np.float32)


def _resize_and_color(x: np.ndarray, spec: Preprocess) -> np.ndarray:
    from PIL import Image

    if x.ndim != 3:
        raise ValueError(f"resize and color need an HxWxC image, got shape {x.shape}")
    img = Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x.astype(np.uint8))
    if spec.color == "rgb":
        img = img.convert("RGB")
    elif spec.color == "grayscale":
        img = img.convert("L")
    if spec.resize is not None:
        height, width = spec.resize
        img = img.resize((width, height), Image.BILINEAR)
    out = np.asarray(img)
    return out[..., None] if out.ndim == 2 else out
