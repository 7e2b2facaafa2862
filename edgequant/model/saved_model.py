"""What a SavedModel takes: its serving signature's inputs, read once per file version."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from edgequant.data.stream import InputSpec
from edgequant.errors import ModelFileError


def saved_model_inputs(path: Path) -> tuple[InputSpec, ...]:
    """The serving signature's inputs."""
    return _saved_model_inputs(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _saved_model_inputs(path: Path, mtime_ns: int) -> tuple[InputSpec, ...]:
    """Cached per path and modification time: the recipe check before the build reads it too."""
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
        signature = loaded.signatures["serving_default"]
    except (KeyError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: no usable serving_default signature ({exc})") from None
    _, kwargs = signature.structured_input_signature
    return tuple(
        InputSpec(name, tuple(-1 if d is None else int(d) for d in spec.shape[1:]), spec.dtype.name)
        for name, spec in sorted(kwargs.items())
    )
