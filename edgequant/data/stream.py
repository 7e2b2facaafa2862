"""Preprocessed, checked samples for a model input, streamed from a DataSpec.

Every sample is checked as it passes: shape and dtype against the model's input,
finiteness, and an integer label. A bad sample stops the stream with a message that
names the source and the sample's index (and file name, for images). A stream that
yields no sample at all is an error too: nothing calibrated or evaluated on nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

import numpy as np

from edgequant.data.preprocess import preprocess
from edgequant.data.sources import describe, iter_raw
from edgequant.errors import DataError
from edgequant.recipe.schema import DataSpec, Preprocess


@dataclass(frozen=True)
class InputSpec:
    """A model input as the data must match it: shape without the batch dimension, dtype."""

    name: str
    shape: tuple[int, ...]  # without batch; -1 where the model accepts any size
    dtype: str = "float32"

    def matches(self, sample_shape: tuple[int, ...]) -> bool:
        return len(sample_shape) == len(self.shape) and all(d in (-1, s) for d, s in zip(self.shape, sample_shape))


ModelInputs = InputSpec | Sequence[InputSpec] | None
"""One input, the inputs of a model with several (in order), or None (nothing to check against)."""


@dataclass(frozen=True)
class Sample:
    index: int
    # preprocessed, without batch dimension: float32, or the model's own integer dtype for an integer input
    # (token ids, uint8 pixels); for a model with several inputs, a dict by input name
    x: np.ndarray | dict[str, np.ndarray]
    label: int | np.ndarray | None


def input_list(model_input: ModelInputs) -> list[InputSpec]:
    if model_input is None:
        return []
    return [model_input] if isinstance(model_input, InputSpec) else list(model_input)


def iter_samples(
    spec: DataSpec, model_input: ModelInputs = None, *, limit: int | None = None, role: str = "data"
) -> Iterator[Sample]:
    """Yield up to `limit` (default: spec.samples, else all) checked samples.

    With several model inputs, each sample is a dict {input name: array} (see data.sources.iter_raw).
    """
    limit = limit if limit is not None else spec.samples
    name = describe(spec.source)
    inputs = input_list(model_input)
    several = len(inputs) > 1
    index = -1
    raws = iter_raw(spec.source, [i.name for i in inputs] if several else None)
    for index, (raw, label, origin) in enumerate(islice(raws, limit)):
        sample = f"{role} sample {index}" + (f" ({origin})" if origin else "")
        if several:
            if not isinstance(raw, dict) or set(raw) != {i.name for i in inputs}:
                got = ", ".join(raw) if isinstance(raw, dict) else "one array"
                raise DataError(f"{sample} from {name} gives {got}; the model's inputs are "
                                f"{', '.join(i.name for i in inputs)}")
            x = {i.name: _prepared(raw[i.name], spec, i, index, f"{sample} input '{i.name}'", name, role, origin)
                 for i in inputs}
        else:
            x = _prepared(raw, spec, inputs[0] if inputs else None, index, sample, name, role, origin)
        yield Sample(index, x, _checked_label(label, f"{sample} from {name}"))
    if index < 0:
        raise DataError(f"{role} data from {name} holds no samples")


def _prepared(raw, spec: DataSpec, model_input: InputSpec | None, index: int, sample: str, name: str, role: str,
              origin: str | None) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.dtype.kind not in "biuf":
        raise DataError(f"{sample} from {name} holds {raw.dtype} values, not integer or real numbers")
    integer = _integer_dtype(model_input)
    if integer is not None and spec.preprocess == IDENTITY:
        # ids as they are: through float32, an int64 id above 2**24 would change
        x = np.ascontiguousarray(raw)
    else:
        try:
            x = preprocess(raw, spec.preprocess)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{sample} from {name}: cannot preprocess ({exc})") from None
    check_sample(x, index, model_input, source=name, role=role, origin=origin)
    if integer is not None:
        return _as_integers(x, integer, model_input.name, f"{sample} from {name}")
    return x


IDENTITY = Preprocess()


def _integer_dtype(model_input: InputSpec | None) -> np.dtype | None:
    """The input's dtype if it is integer or bool; None for float inputs, and for names numpy does not know
    (TensorFlow's bfloat16, say), which keep the float32 data as before."""
    if model_input is None:
        return None
    try:
        dtype = np.dtype(model_input.dtype)
    except TypeError:
        return None
    return dtype if dtype.kind in "iub" else None


def _as_integers(x: np.ndarray, dtype: np.dtype, input_name: str, sample: str) -> np.ndarray:
    """A sample for an integer input (token ids, uint8 pixels) in that dtype: the converter's calibration and
    the interpreter take no float there, and a value that is not a whole number in range would change."""
    if x.dtype == dtype:
        return x
    if x.dtype.kind == "f" and not np.array_equal(x, np.round(x)):
        raise DataError(f"{sample}: the model's input '{input_name}' takes {dtype} values (ids, pixels), "
                        f"the data holds fractions (after preprocessing: check its scale, mean and std)")
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    if info is not None and x.size and (x.min() < info.min or x.max() > info.max):
        raise DataError(f"{sample}: the model's input '{input_name}' takes {dtype} values in "
                        f"[{info.min}, {info.max}]; the data holds values from {x.min():g} to {x.max():g}")
    return x.astype(dtype)


def _checked_label(label, sample: str):
    """A class id as an int; arrays (one-hot or soft targets) pass as they are."""
    if label is None:
        return None
    value = np.asarray(label)
    if value.ndim > 0:
        if value.dtype.kind not in "biuf" or not np.isfinite(value).all():
            raise DataError(f"{sample}: its label holds {value.dtype} values that are not finite numbers")
        return value
    if value.dtype.kind in "iu" and value >= 0:
        return int(value)
    if value.dtype.kind == "f" and np.isfinite(value) and value >= 0 and float(value).is_integer():
        return int(value)
    raise DataError(f"{sample}: label {value.item()!r} is not a class id (a non-negative integer)")


def check_sample(
    x: np.ndarray, index: int, model_input: InputSpec | None, *, source: str, role: str, origin: str | None = None
) -> None:
    """Raise DataError if sample `index` does not fit `model_input` or is not finite."""
    sample = f"{role} sample {index}" + (f" ({origin})" if origin else "")
    if model_input is not None and not model_input.matches(x.shape):
        raise DataError(
            f"{sample} from {source} has shape {tuple(x.shape)} after preprocessing; "
            f"the model's input '{model_input.name}' expects {model_input.shape}"
            " (check the recipe's preprocess: resize, layout)"
        )
    if not np.isfinite(x).all():
        bad = "NaN" if np.isnan(x).any() else "infinite values"
        raise DataError(f"{sample} from {source} contains {bad}")


def iter_batches(
    spec: DataSpec, model_input: ModelInputs, batch_size: int, *, limit: int | None = None, role: str = "data",
    keep: Callable[[int], bool] | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Stacked batches of checked samples (the last one may be smaller); labels None if the source has none.

    A batch is an array, or a dict {input name: array} for a model with several inputs. Samples of
    different shapes (a dynamic axis) go into different batches.

    keep: take only the samples whose index it accepts (`limit` counts every sample read).
    """
    stream = (s for s in iter_samples(spec, model_input, limit=limit, role=role) if keep is None or keep(s.index))
    chunk: list[Sample] = []
    for s in stream:
        if chunk and (len(chunk) == batch_size or _shapes(s.x) != _shapes(chunk[0].x)):
            yield _stacked(chunk)  # a dynamic axis (a sequence length) changed: samples of one shape per batch
            chunk = []
        chunk.append(s)
    if chunk:
        yield _stacked(chunk)


def _shapes(x) -> tuple:
    return tuple(v.shape for v in x.values()) if isinstance(x, dict) else x.shape


def _stacked(chunk: list[Sample]) -> tuple[np.ndarray | dict[str, np.ndarray], np.ndarray | None]:
    first = chunk[0].x
    if isinstance(first, dict):
        xs = {name: np.stack([s.x[name] for s in chunk]) for name in first}
    else:
        xs = np.stack([s.x for s in chunk])
    labels = [s.label for s in chunk]
    ys = None if any(y is None for y in labels) else np.asarray(labels)
    return xs, ys
