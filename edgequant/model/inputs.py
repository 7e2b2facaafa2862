"""Inputs for a benchmark: generated with the right dtype and range, or read from real data.

Generated values (seeded, so every run and every kernel choice sees the same input):
- float inputs: uniform in [0, 1) by default (what normalized image models expect), or standard
  normal with `float_distribution="normal"`;
- quantized integer inputs (a scale and zero point): real values uniform over the whole real
  domain the scale and zero point can represent, [scale*(qmin-zp), scale*(qmax-zp)], then
  quantized, so every integer code of the dtype can appear;
- integer inputs without quantization (ids, indices): uniform integers in [0, 8), a range any
  index input of size 8 or more accepts; pass real data for embedding lookups;
- bool inputs: fair coin flips.
Real data comes from a .npy file (one input) or a .npz file keyed by input name; float data for
a quantized input is quantized with its scale and zero point (see `edgequant.model.runtime.set_inputs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from edgequant.data.sources import NUMPY_FILE_ERRORS
from edgequant.errors import DataError

FloatDistribution = Literal["uniform", "normal"]
UNQUANTIZED_INT_HIGH = 8  # exclusive upper bound of generated values for plain integer inputs


def quantized_real_range(detail: dict) -> tuple[float, float]:
    """The real interval an integer input's scale and zero point can represent."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(np.dtype(detail["dtype"]))
    return float(scale * (info.min - zero_point)), float(scale * (info.max - zero_point))


def generate_input(detail: dict, rng: np.random.Generator, float_distribution: FloatDistribution = "uniform") -> np.ndarray:
    """One input array for an interpreter input `detail` (from `get_input_details()`)."""
    shape = tuple(int(d) for d in detail["shape"])
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        if float_distribution == "normal":
            return rng.standard_normal(shape).astype(dtype)
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        scale, zero_point = detail["quantization"]
        if scale == 0:
            high = min(UNQUANTIZED_INT_HIGH, int(np.iinfo(dtype).max) + 1)
            return rng.integers(0, high, size=shape, dtype=dtype)
        low, high = quantized_real_range(detail)
        real = rng.uniform(low, high, size=shape)
        info = np.iinfo(dtype)
        return np.clip(np.round(real / scale + zero_point), info.min, info.max).astype(dtype)
    raise DataError(f"input '{detail['name']}': cannot generate values of dtype {dtype}; pass real data")


def generate_inputs(details: list[dict], seed: int = 0, float_distribution: FloatDistribution = "uniform") -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [generate_input(d, rng, float_distribution) for d in details]


def read_inputs(path: str | Path, details: list[dict]) -> list[np.ndarray]:
    """Real data for every input: a .npy for a single-input model, or a .npz keyed by input name.

    A leading batch larger than the model's is cut to the model's batch (the first samples).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such input file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: an empty file, not a .npy/.npz array")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            if len(details) != 1:
                raise DataError(f"{path}: a .npy holds one array, the model has {len(details)} inputs; "
                                "use a .npz keyed by input name")
            arrays = [loaded]
        else:
            with loaded:
                missing = [d["name"] for d in details if d["name"] not in loaded.files]
                if missing:
                    raise DataError(f"{path}: no array for input(s) {', '.join(missing)} (it has {', '.join(loaded.files)})")
                arrays = [loaded[d["name"]] for d in details]
    except NUMPY_FILE_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npy/.npz file ({type(exc).__name__}: {exc})") from None
    return [_fit_batch(path, a, d) for a, d in zip(arrays, details)]


def _fit_batch(path: Path, array: np.ndarray, detail: dict) -> np.ndarray:
    """The array at the model's batch; along a dynamic axis (-1 in the signature) any size passes (the benchmark
    resizes the input to it)."""
    shape = tuple(int(d) for d in detail["shape"])
    signature = detail.get("shape_signature")
    signature = tuple(int(d) for d in signature) if signature is not None and len(signature) else shape

    def fits(dims: tuple) -> bool:
        return len(dims) == len(shape) - 1 and all(s in (-1, d) for s, d in zip(signature[1:], dims))

    if array.shape == shape:
        return array
    if array.ndim == len(shape) and fits(array.shape[1:]) and array.shape[0] >= shape[0]:
        return array[: shape[0]]
    if fits(array.shape) and shape[0] == 1:
        return array[None]
    raise DataError(f"{path}: input '{detail['name']}' has shape {list(array.shape)}, the model expects {list(shape)}")
