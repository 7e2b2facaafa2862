"""Raw samples from each kind of source, one at a time: (sample, label or None).

Image-like sources yield HxWxC arrays; array files yield what they hold, row by row.
Nothing here loads a whole dataset into memory (a .npz member is the one exception:
the format cannot be memory-mapped).

Each raw sample carries its origin (an image's file name), so that an error names it.
A callable source runs the recipe author's code: whatever it raises, even SystemExit,
becomes a DataError naming it.
"""

from __future__ import annotations

import importlib
import tokenize
import warnings
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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

# What numpy.load and reading a .npz member raise on a damaged file (a header numpy parses as Python
# literals raises tokenize and syntax errors; a cut-short zip member, zlib's).
NUMPY_FILE_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, zipfile.BadZipFile, zlib.error)

RawSample = tuple[np.ndarray, "int | np.ndarray | None", "str | None"]  # sample, label, origin

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


def iter_raw(source, input_names: Sequence[str] | None = None) -> Iterator[RawSample]:
    """Raw samples of `source`. For a model with several inputs (`input_names`), each sample is a dict
    {input name: array}: an .npz holds one array per input, or a callable yields such dicts."""
    several = input_names is not None and len(input_names) > 1
    if several and not isinstance(source, (NpzSource, CallableSource)):
        raise DataError(f"{describe(source)}: the model has {len(input_names)} inputs ({', '.join(input_names)}); "
                        "give its data as an .npz with one array per input (named after the inputs, or arr_0, "
                        "arr_1, ... in input order)")
    if isinstance(source, NpySource):
        return _iter_npy(source)
    if isinstance(source, NpzSource):
        return _iter_npz_inputs(source, list(input_names)) if several else _iter_npz(source)
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
    if path.stat().st_size == 0:
        raise DataError(f"{path}: an empty file, not a .npy array")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)  # memory-mapped: rows are read on demand
    except NUMPY_FILE_ERRORS as exc:
        raise DataError(f"{path}: cannot read as a .npy array without pickle ({exc})") from None
    return _stacked(array, path)


def _stacked(array, where) -> np.ndarray:
    """`array` if it is a stack of samples along axis 0 of numbers."""
    if not isinstance(array, np.ndarray) or array.ndim == 0:
        raise DataError(f"{where}: a single value, not samples stacked along axis 0")
    if array.dtype.kind not in "biuf":
        raise DataError(f"{where}: holds {array.dtype} values; samples and labels must be integer or real numbers")
    return array


def _iter_npy(source: NpySource) -> Iterator[RawSample]:
    x = _load_npy(source.path)
    y = _load_npy(source.labels) if source.labels else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{source.labels}: {len(y)} labels for {len(x)} samples in {source.path}")
    for i in range(len(x)):
        yield np.asarray(x[i]), (y[i] if y is not None else None), None


def _open_npz(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        return np.load(path, allow_pickle=False)
    except NUMPY_FILE_ERRORS as exc:
        raise DataError(f"{path}: cannot read as a .npz archive ({exc})") from None


def _iter_npz(source: NpzSource) -> Iterator[RawSample]:
    with _open_npz(source.path) as archive:
        for key in filter(None, (source.key, source.labels_key)):
            if key not in archive.files:
                raise DataError(f"{source.path}: no array {key!r} (it holds {', '.join(archive.files)})")
        x = _npz_member(archive, source.path, source.key)
        y = _npz_member(archive, source.path, source.labels_key) if source.labels_key else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{source.path}: {len(y)} labels in {source.labels_key!r} for {len(x)} samples")
    labels = y if y is not None else repeat(None)
    for sample, label in zip(x, labels):
        yield sample, label, None


def _iter_npz_inputs(source: NpzSource, names: list[str]) -> Iterator[RawSample]:
    """One dict {input name: sample} per row of an .npz holding an array per input, by name or by position."""
    with _open_npz(source.path) as archive:
        positional = [f"arr_{i}" for i in range(len(names))]
        keys = names if set(names) <= set(archive.files) else positional if set(positional) <= set(archive.files) \
            else None
        if keys is None:
            raise DataError(f"{source.path}: the model's inputs are {', '.join(names)}: the .npz needs one array per "
                            f"input, named so (or {', '.join(positional)} in that order); it holds "
                            f"{', '.join(archive.files) or 'nothing'}")
        if source.labels_key and source.labels_key not in archive.files:
            raise DataError(f"{source.path}: no array {source.labels_key!r} (it holds {', '.join(archive.files)})")
        arrays = {name: _npz_member(archive, source.path, key) for name, key in zip(names, keys)}
        y = _npz_member(archive, source.path, source.labels_key) if source.labels_key else None
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise DataError(f"{source.path}: the inputs' arrays hold different numbers of samples: "
                        + ", ".join(f"{k} {n}" for k, n in zip(keys, lengths.values())))
    n = next(iter(lengths.values()))
    if y is not None and len(y) != n:
        raise DataError(f"{source.path}: {len(y)} labels in {source.labels_key!r} for {n} samples")
    for i in range(n):
        yield {name: a[i] for name, a in arrays.items()}, (y[i] if y is not None else None), None


def _npz_member(archive, path: Path, key: str) -> np.ndarray:
    try:
        array = archive[key]
    except NUMPY_FILE_ERRORS as exc:
        raise DataError(f"{path}: cannot read array {key!r} without pickle ({exc})") from None
    return _stacked(array, f"{path}[{key!r}]")


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
    files, classes = image_files(source)
    for path in files:
        label = None
        if source.labels == "subfolders":
            if path.parent == source.path:
                raise DataError(f"{path}: with labels: subfolders, every image must be in a class subfolder")
            label = classes.index(path.relative_to(source.path).parts[0])
        array = _read_image(path)
        yield (array[..., None] if array.ndim == 2 else array), label, path.name


def _read_image(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return np.asarray(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise DataError(f"{path}: refused: more pixels than Pillow's decompression-bomb limit "
                        f"({Image.MAX_IMAGE_PIXELS:,})") from None
    except Exception as exc:  # image decoders raise OSError, SyntaxError, ValueError, struct.error... on bad files
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None


def _iter_fashion_mnist(source: FashionMnistSource) -> Iterator[RawSample]:
    prefix = "train" if source.split == "train" else "t10k"
    images = source.path / f"{prefix}-images-idx3-ubyte.gz"
    labels = source.path / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (images, labels):
        if not path.is_file():
            raise DataError(f"{path}: Fashion-MNIST not found (install Debian's dataset-fashion-mnist package)")
    for x, y in zip(iter_idx(images), iter_idx(labels)):
        yield x[..., None], int(y), None


def _iter_callable(source: CallableSource) -> Iterator[RawSample]:
    target = source.target
    module_name, func_name = target.split(":")
    with _user_code(target, "import"):
        func = getattr(importlib.import_module(module_name), func_name)
    if not callable(func):
        raise DataError(f"{target}: is a {type(func).__name__}, not a function")
    with _user_code(target, "call"):
        items = func(**source.kwargs)
    try:
        items = iter(items)
    except TypeError:
        raise DataError(f"{target}: returned {type(items).__name__}, not an iterable of samples") from None
    index = 0
    while True:
        with _user_code(target, f"produce sample {index}"):
            try:
                item = next(items)
            except StopIteration:
                return
        sample, label = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
        if isinstance(sample, dict):  # one array per input of a model with several
            yield {str(k): _as_array(v, f"{target}: input {k!r}", index) for k, v in sample.items()}, label, None
        else:
            yield _as_array(sample, target, index), label, None
        index += 1


def _as_array(item, target: str, index: int) -> np.ndarray:
    try:
        array = np.asarray(item)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{target}: sample {index} is not an array ({exc})") from None
    if array.dtype.kind not in "biuf":
        raise DataError(f"{target}: sample {index} holds {array.dtype} values, not integer or real numbers")
    return array


@contextmanager
def _user_code(target: str, action: str):
    """Turn anything the recipe author's code raises (SystemExit too) into a DataError naming it.

    KeyboardInterrupt passes: the user asked to stop.
    """
    try:
        yield
    except (KeyboardInterrupt, DataError):
        raise
    except SystemExit as exc:
        raise DataError(f"{target}: failed to {action}: it called sys.exit({exc.code!r})") from None
    except BaseException as exc:  # noqa: BLE001 - user code may raise anything
        text = str(exc).strip().splitlines()
        detail = f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__
        raise DataError(f"{target}: failed to {action}: it raised {detail}") from None
