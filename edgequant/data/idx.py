"""Streaming reader for gzip IDX files (the MNIST / Fashion-MNIST format)."""

from __future__ import annotations

import gzip
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgequant.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def iter_idx(path: str | Path) -> Iterator[np.ndarray]:
    """Yield the records of an IDX file one at a time (images: HxW, labels: scalars)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such IDX file")
    with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\0\0" or header[2] not in _DTYPES:
            raise DataError(f"{path}: not an IDX file (bad magic number)")
        dtype = np.dtype(_DTYPES[header[2]])
        dims = struct.unpack(f">{header[3]}I", f.read(4 * header[3]))
        record_shape = dims[1:]
        record_bytes = int(np.prod(record_shape, dtype=np.int64)) * dtype.itemsize
        for i in range(dims[0]):
            raw = f.read(record_bytes)
            if len(raw) != record_bytes:
                raise DataError(f"{path}: truncated at record {i} of {dims[0]}")
            yield np.frombuffer(raw, dtype=dtype).reshape(record_shape)


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def load_fashion_mnist(split: str = "test", path: Path = FASHION_MNIST) -> tuple[np.ndarray, np.ndarray]:
    """A whole Fashion-MNIST split as arrays, for training scripts and tests: images (N, 28, 28, 1)
    float32 in [0, 1], labels (N,) int64. Pipelines stream instead (FashionMnistSource)."""
    prefix = "train" if split == "train" else "t10k"
    x = np.stack(list(iter_idx(path / f"{prefix}-images-idx3-ubyte.gz")))[..., None].astype(np.float32) / 255.0
    y = np.array(list(iter_idx(path / f"{prefix}-labels-idx1-ubyte.gz")), dtype=np.int64)
    return x, y
