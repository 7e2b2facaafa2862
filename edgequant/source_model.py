"""The float source model: recognise it, hash it, load it, and export it once to a SavedModel.

Every variant of a build is converted from that one export (exporting is the slow
part of a conversion; DESIGN.md measured 6.1 s for MobileNetV2, against 4-5 s per
variant for the conversion itself).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edgequant.data.stream import InputSpec
from edgequant.errors import ModelFileError

SourceKind = Literal["keras", "h5-keras3", "h5-tf_keras", "saved_model", "onnx", "in-memory"]


@dataclass(frozen=True)
class ExportedModel:
    """A SavedModel ready for TFLiteConverter, with what the data must match."""

    saved_model_dir: Path
    inputs: tuple[InputSpec, ...]
    source_kind: SourceKind
    source_sha256: str
    keras_model: Any = None  # the loaded Keras model, for QAT and per-layer analysis; None for SavedModels
    onnx: Any = None  # an onnx_import.OnnxSource when the source is an .onnx file converted to this SavedModel

    @property
    def input(self) -> InputSpec:
        return self.inputs[0]


def source_kind(path: Path) -> SourceKind:
    """What kind of model file `path` is, without loading it."""
    if not path.exists():
        raise ModelFileError(f"{path}: no such model file or SavedModel directory")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "saved_model"
        raise ModelFileError(f"{path}: a directory but not a SavedModel (no saved_model.pb)")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        return "keras"
    if suffix in (".h5", ".hdf5"):
        return "h5-keras3" if _h5_keras_version(path).startswith("3") else "h5-tf_keras"
    if suffix == ".onnx":
        return "onnx"
    raise ModelFileError(f"{path}: unsupported model file (expected .keras, .h5, .onnx or a SavedModel directory)")


def _h5_keras_version(path: Path) -> str:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "")
    except OSError as exc:
        raise ModelFileError(f"{path}: not a readable HDF5 file ({exc})") from None
    return version.decode() if isinstance(version, bytes) else str(version)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        if path.is_dir():
            digest.update(f.relative_to(path).as_posix().encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def load_keras_model(path: Path, kind: SourceKind):
    """Load a Keras 3 or tf_keras model file (weights and architecture, not the optimizer)."""
    try:
        if kind in ("keras", "h5-keras3"):
            import keras

            return keras.saving.load_model(path, compile=False)
        import tf_keras

        return tf_keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras raises anything from ValueError to TypeError on a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path}: cannot load the model ({first[:300]})") from None


def export_model(path: Path, workdir: Path, input_shape: list[int] | None = None) -> ExportedModel:
    """Export the model at `path` once, into `workdir`, for every conversion of the build."""
    kind = source_kind(path)
    sha = file_sha256(path)
    if kind == "saved_model":
        if input_shape is not None:
            raise ModelFileError(f"{path}: input_shape cannot override a SavedModel's signature; export it again")
        return ExportedModel(path, saved_model_inputs(path), kind, sha)
    if kind == "onnx":
        from edgequant.onnx_import import import_onnx  # needs the onnx extra: imported only for .onnx models

        return import_onnx(path, sha, input_shape)
    model = load_keras_model(path, kind)
    return export_keras_model(model, workdir, input_shape=input_shape, kind=kind, sha256=sha)


def export_keras_model(
    model, workdir: Path, *, input_shape: list[int] | None = None, kind: SourceKind = "in-memory", sha256: str = ""
) -> ExportedModel:
    """Export an in-memory Keras 3 or tf_keras model to `workdir/saved_model`."""
    import tensorflow as tf

    if len(model.inputs) != 1:
        names = ", ".join(t.name for t in model.inputs)
        raise ModelFileError(f"the model has {len(model.inputs)} inputs ({names}); edgequant supports one input")
    spec_in = model.inputs[0]
    dtype = tf.as_dtype(spec_in.dtype)
    shape = list(input_shape) if input_shape is not None else [d if d is not None else -1 for d in spec_in.shape[1:]]
    signature = tf.TensorSpec([None, *[None if d == -1 else d for d in shape]], dtype, name="input")
    target = workdir / "saved_model"
    try:
        if _is_keras3(model):
            model.export(str(target), format="tf_saved_model", input_signature=[signature], verbose=False)
        else:
            serve = tf.function(lambda x: model(x, training=False), input_signature=[signature])
            tf.saved_model.save(model, str(target), signatures={"serving_default": serve.get_concrete_function()})
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"cannot export the model to a SavedModel ({first[:300]})") from None
    return ExportedModel(target, (InputSpec("input", tuple(shape), dtype.name),), kind, sha256, model)


def _is_keras3(model) -> bool:
    return type(model).__module__.startswith("keras.")  # tf_keras models live in "tf_keras.src..."


def saved_model_inputs(path: Path) -> tuple[InputSpec, ...]:
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
