"""Sample inputs for the app: an .npz in, a raw binary file (`samples.bin`) and its description out.

The .npz holds `x` (the samples, stacked along axis 0; or the file's only array) and optionally `y`
(class ids, or one-hot rows). Samples stay raw (e.g. uint8 pixels): the app applies the manifest's
preprocessing and quantization itself, so that path is what gets exercised on the device.

`samples.bin` is the samples' values in C order, little-endian, in one of uint8, int8, int16, float32,
shaped [count, *model input shape without batch]. The app does not resize or convert color.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgequant.android.device_paths import SAMPLES_FILE
from edgequant.data.sources import NUMPY_FILE_ERRORS
from edgequant.errors import DataError

SAMPLE_DTYPES = ("uint8", "int8", "int16", "float32")


@dataclass(frozen=True)
class SamplesFile:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    labels: tuple[int, ...] | None
    available: int  # samples in the source file; `shape[0]` of them were kept

    def to_dict(self) -> dict:
        return {
            "file": self.path.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "sha256": self.sha256,
            "labels": None if self.labels is None else list(self.labels),
        }


def load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The samples `x` and the optional labels `y` of an .npz file."""
    if not path.is_file():
        raise DataError(f"{path}: no such .npz file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            if "x" in keys:
                x = npz["x"]
            elif len(keys) == 1:
                x = npz[keys[0]]
            else:
                raise DataError(f"{path}: no array 'x' (arrays: {', '.join(keys) or 'none'}); name the samples 'x' and labels 'y'")
            y = npz["y"] if "y" in keys else None
    except NUMPY_FILE_ERRORS as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    return x, y


def fit_to_input(x: np.ndarray, input_shape: tuple[int, ...], layout: str, origin: str) -> np.ndarray:
    """Samples shaped [count, *input_shape[1:]]: same values, reshaped or (NHWC -> NCHW) transposed."""
    target = tuple(input_shape[1:])
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError(f"{origin}: x holds no samples (shape {x.shape})")
    per_sample = tuple(x.shape[1:])
    if per_sample == target:
        return x
    if layout == "nchw" and len(per_sample) == 3 and len(target) == 3 and (per_sample[2], per_sample[0], per_sample[1]) == target:
        return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731 - (28, 28) fits (28, 28, 1)
    if squeeze(per_sample) == squeeze(target):
        return x.reshape((x.shape[0],) + target)
    raise DataError(
        f"{origin}: each sample has shape {per_sample}, the model input needs {target}; "
        "the app does not resize or convert color, so give samples at the model's input size"
    )


def to_sample_dtype(x: np.ndarray, origin: str) -> np.ndarray:
    """The smallest of uint8, int8, int16, float32 that holds the values exactly (float64 becomes float32)."""
    if x.dtype == np.bool_:
        return x.astype(np.uint8)
    if x.dtype.kind in "ui":
        for dtype in (np.uint8, np.int8, np.int16):
            info = np.iinfo(dtype)
            if x.size == 0 or (x.min() >= info.min and x.max() <= info.max):
                return x.astype(dtype)
        return x.astype(np.float32)
    if x.dtype.kind == "f":
        x32 = x.astype(np.float32)
        if not np.all(np.isfinite(x32)):
            raise DataError(f"{origin}: x has NaN or infinite values")
        return x32
    raise DataError(f"{origin}: x has dtype {x.dtype}; expected integers or floats")


def labels_from(y: np.ndarray | None, count: int, origin: str) -> tuple[int, ...] | None:
    if y is None:
        return None
    if y.ndim == 2:  # one-hot rows
        y = np.argmax(y, axis=1)
    y = y.reshape(-1)
    if y.shape[0] != count:
        raise DataError(f"{origin}: y has {y.shape[0]} labels for {count} samples")
    if y.dtype.kind not in "ui" and not (y.dtype.kind == "f" and np.all(y == np.round(y))):
        raise DataError(f"{origin}: y must hold integer class ids, got {y.dtype}")
    return tuple(int(v) for v in y)


def write_samples(
    npz: Path, input_shape: tuple[int, ...], layout: str, out_dir: Path, *, max_samples: int
) -> SamplesFile:
    """Convert `npz` for a model input of `input_shape`; writes out_dir/samples.bin atomically."""
    origin = str(npz)
    x, y = load_npz(npz)
    x_all_count = x.shape[0] if x.ndim else 0
    count = min(x.shape[0], max_samples) if x.ndim else 0
    labels = labels_from(y, x.shape[0] if x.ndim else 0, origin)
    x = fit_to_input(x[:count] if x.ndim else x, input_shape, layout, origin)
    x = np.ascontiguousarray(to_sample_dtype(x, origin)).astype(np.dtype(x.dtype).newbyteorder("<"), copy=False)
    data = x.tobytes(order="C")
    path = out_dir / SAMPLES_FILE
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{SAMPLES_FILE}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return SamplesFile(
        path=path,
        dtype=str(x.dtype.name),
        shape=tuple(int(d) for d in x.shape),
        sha256=hashlib.sha256(data).hexdigest(),
        labels=None if labels is None else labels[:count],
        available=int(x_all_count),
    )


def read_samples(spec: dict, directory: Path) -> np.ndarray:
    """The samples a manifest's `samples` entry describes, as their stored dtype and shape."""
    data = (directory / spec["file"]).read_bytes()
    return np.frombuffer(data, dtype=np.dtype(spec["dtype"]).newbyteorder("<")).reshape(spec["shape"])
