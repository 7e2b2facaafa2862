"""Raw samples from each kind of source, one at a time: (sample, label or None).

Image-like sources yield HxWxC arrays; array files yield what they hold, row by row.
Nothing here loads a whole dataset into memory (a .npz member is the one exception:
the format cannot be memory-mapped).
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

import numpy as np

from edgequant.data.idx import iter_idx
from edgequant.errors import DataError
from edgequant.recipe.schema import (
    CallableSource,
    FashionMnistSource,
    ImageFolderSource,
    NpySource,
    NpzSource,
)

RawSample = tuple[np.ndarray, "int | np.ndarray | None"]

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def describe(source) -> str:
    """A short name for a source, used in error messages."""
    if isinstance(source, CallableSource):
        return source.target
    if isinstance(source, FashionMnistSource):
        return f"fashion-mnist/{source.split}"
    return str(source.path)


def class_names(source) -> list[str] | None:
    """The names of the label ids a source yields, when the source knows them."""
    if isinstance(source, FashionMnistSource):
        return list(FASHION_MNIST_CLASSES)
    if isinstance(source, ImageFolderSource) and source.labels == "subfolders":
        return image_files(source)[1]
    return None


def iter_raw(source) -> Iterator[RawSample]:
    if isinstance(source, NpySource):
        return _iter_npy(source)
    if isinstance(source, NpzSource):
        return _iter_npz(source)
    if isinstance(source, ImageFolderSource):
        return _iter_images(source)
    if isinstance(source, FashionMnistSource):
        return _iter_fashion_mnist(source)
    if isinstance(source, CallableSource):
        return _iter_callable(source)
    raise TypeError(f"unknown source {source!r}")


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)  # memory-mapped: rows are read on demand
    except ValueError as exc:
        raise DataError(f"{path}: cannot read as a .npy array without pickle ({exc})") from None


def _iter_npy(source: NpySource) -> Iterator[RawSample]:
    x = _load_npy(source.path)
    y = _load_npy(source.labels) if source.labels else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{source.labels}: {len(y)} labels for {len(x)} samples in {source.path}")
    for i in range(len(x)):
        yield np.asarray(x[i]), (y[i] if y is not None else None)


def _iter_npz(source: NpzSource) -> Iterator[RawSample]:
    if not source.path.is_file():
        raise DataError(f"{source.path}: no such file")
    try:
        archive = np.load(source.path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"{source.path}: cannot read as a .npz archive ({exc})") from None
    with archive:
        for key in filter(None, (source.key, source.labels_key)):
            if key not in archive.files:
                raise DataError(f"{source.path}: no array {key!r} (it holds {', '.join(archive.files)})")
        x = archive[source.key]
        y = archive[source.labels_key] if source.labels_key else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{source.path}: {len(y)} labels in {source.labels_key!r} for {len(x)} samples")
    labels = y if y is not None else repeat(None)
    yield from zip(x, labels)


def image_files(source: ImageFolderSource) -> tuple[list[Path], list[str]]:
    """The image files of a folder (sorted) and, with `labels: subfolders`, the class names."""
    if not source.path.is_dir():
        raise DataError(f"{source.path}: no such image folder")
    extensions = {e.lower() for e in source.extensions}
    files = sorted(p for p in source.path.rglob("*") if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise DataError(f"{source.path}: no image files ({', '.join(sorted(extensions))})")
    classes = sorted({p.relative_to(source.path).parts[0] for p in files if p.parent != source.path})
    return files, classes


def _iter_images(source: ImageFolderSource) -> Iterator[RawSample]:
    from PIL import Image

    files, classes = image_files(source)
    for path in files:
        label = None
        if source.labels == "subfolders":
            if path.parent == source.path:
                raise DataError(f"{path}: with labels: subfolders, every image must be in a class subfolder")
            label = classes.index(path.relative_to(source.path).parts[0])
        try:
            with Image.open(path) as img:
                img.load()
                array = np.asarray(img)
        except OSError as exc:
            raise DataError(f"{path}: cannot read image ({exc})") from None
        yield (array[..., None] if array.ndim == 2 else array), label


def _iter_fashion_mnist(source: FashionMnistSource) -> Iterator[RawSample]:
    prefix = "train" if source.split == "train" else "t10k"
    images = source.path / f"{prefix}-images-idx3-ubyte.gz"
    labels = source.path / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise DataError(f"{path}: Fashion-MNIST not found (install Debian's dataset-fashion-mnist package)")
    for x, y in zip(iter_idx(images), iter_idx(labels)):
        yield x[..., None], int(y)


def _iter_callable(source: CallableSource) -> Iterator[RawSample]:
    module_name, func_name = source.target.split(":")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DataError(f"{source.target}: cannot import ({exc})") from None
    for item in func(**source.kwargs):
        if isinstance(item, tuple) and len(item) == 2:
            yield np.asarray(item[0]), item[1]
        else:
            yield np.asarray(item), None
