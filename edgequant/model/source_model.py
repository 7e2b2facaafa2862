"""The float source model: recognise it, hash it, load it, and export it once to a SavedModel.

Every variant of a build is converted from that one export (exporting is the slow
part of a conversion; DESIGN.md measured 6.1 s for MobileNetV2, against 4-5 s per
variant for the conversion itself).
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edgequant.data.stream import InputSpec
from edgequant.errors import ModelFileError
from edgequant.model.saved_model import saved_model_inputs
from edgequant.trust import trusted, untrusted

SourceKind = Literal["keras", "h5-keras3", "h5-tf_keras", "saved_model", "onnx", "in-memory"]


@dataclass(frozen=True)
class ExportedModel:
    """A SavedModel ready for TFLiteConverter, with what the data must match."""

    saved_model_dir: Path
    inputs: tuple[InputSpec, ...]
    source_kind: SourceKind
    source_sha256: str
    _keras_model: Any = None  # the loaded Keras model (see keras_model)
    onnx: Any = None  # an onnx_import.OnnxSource when the source is an .onnx file converted to this SavedModel
    recurrent: tuple[str, ...] = ()  # the Keras model's recurrent layers (exported with a batch of 1)
    # Loads the Keras model on first use, when another process exported it (convert_worker): a build that only
    # converts then never imports TensorFlow in this one.
    load_keras: Callable[[], Any] | None = field(default=None, compare=False, repr=False)
    _unrolled: dict = field(default_factory=dict, compare=False, repr=False)  # saved_model_for's export, once

    @property
    def keras_model(self):
        """The Keras model, for QAT, low-bit modes, the int8 fixes and unrolling; None for SavedModels and ONNX."""
        if self._keras_model is None and self.load_keras is not None:
            object.__setattr__(self, "_keras_model", self.load_keras())  # frozen: a cache, as _unrolled is
        return self._keras_model

    def saved_model_for(self, mode: str) -> Path:
        """The SavedModel to convert `mode` from: the export, or for a calibrated mode of a Keras model with
        recurrent layers, a copy of it with every recurrent loop unrolled (exported on first use).

        TFLiteConverter's calibration runs the float model's WHILE loop and crashes (SIGSEGV) on the
        recurrent models tried (Keras 3 LSTM, GRU, Bidirectional with Masking; tf_keras GRU and masked
        Bidirectional): unrolled, they calibrate. The float modes keep the loop, which is smaller
        (a 16-unit LSTM over 28 steps: 21 KB rolled, 85 KB unrolled in float32).
        A sequence of unknown length cannot be unrolled: its calibrated modes convert the loop, in the
        child process that a crash cannot take down (edgequant.quantization.convert_worker).
        """
        if mode not in ("int8", "int16x8") or not self.recurrent or self.keras_model is None:
            return self.saved_model_dir
        if "dir" not in self._unrolled:
            self._unrolled["dir"] = _export_unrolled(self)
        return self._unrolled["dir"] or self.saved_model_dir

    @property
    def input(self) -> InputSpec:
        return self.inputs[0]

    @property
    def data_inputs(self) -> InputSpec | tuple[InputSpec, ...]:
        """What data must match (edgequant.data.stream): the one input, or every input of a model with several."""
        return self.inputs if len(self.inputs) > 1 else self.inputs[0]


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


def model_config(path: Path, kind: SourceKind) -> dict | None:
    """The architecture a .keras or .h5 file declares (JSON), read without building the model."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                text = archive.read("config.json")
        elif kind.startswith("h5"):
            import h5py

            with h5py.File(path, "r") as f:
                text = f.attrs.get("model_config")
            if text is None:
                raise ModelFileError(f"{path}: an HDF5 file without a model architecture (weights only?)")
        else:
            return None
        config = json.loads(text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelFileError(f"{path}: cannot read the model's architecture ({type(exc).__name__}: {exc})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: the model's architecture is not a JSON object")
    return config


def unsafe_layers(config: dict | None) -> list[str]:
    """Names of the layers whose loading runs Python from the file (Lambda), anywhere in `config`."""
    found, stack = [], [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                inner = node.get("config")
                found.append(str(inner.get("name", "?")) if isinstance(inner, dict) else "?")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return sorted(found)


def refuse_unsafe_layers(path: Path, kind: SourceKind) -> None:
    """Raise InputError if loading the model at `path` would run Python code stored in it."""
    names = unsafe_layers(model_config(path, kind))
    if names:
        raise untrusted(f"{path}: Lambda layer(s) {', '.join(names[:5])} run Python code stored in the file "
                        "when the model loads")


def declared_input(path: Path, input_shape: list[int] | None = None) -> InputSpec | tuple[InputSpec, ...] | None:
    """The model's input as its file declares it (a tuple for a model with several), without exporting; None
    where only the export can tell."""
    if input_shape is not None:
        return InputSpec("input", tuple(input_shape))
    kind = source_kind(path)
    if kind == "saved_model":
        inputs = saved_model_inputs(path)
    else:
        inputs = _config_inputs(model_config(path, kind))
    if len(inputs) > 1:
        return inputs
    return inputs[0] if inputs else None


def _config_inputs(config: dict | None) -> tuple[InputSpec, ...]:
    """The InputLayers of a Keras 3 or tf_keras config (batch dimension dropped, None as -1)."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list) or not layers:
        return ()
    declared = [layer for layer in layers if isinstance(layer, dict) and layer.get("class_name") == "InputLayer"]
    if not declared and isinstance(layers[0], dict):
        declared = [layers[0]]  # a tf_keras Sequential declares its input on its first layer
    inputs = []
    for layer in declared:
        cfg = layer.get("config") if isinstance(layer.get("config"), dict) else {}
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if not isinstance(shape, list) or len(shape) < 2:
            return ()
        dims = tuple(-1 if d is None else d for d in shape[1:])
        if not all(isinstance(d, int) for d in dims):
            return ()
        inputs.append(InputSpec(str(cfg.get("name", "input")), dims, str(cfg.get("dtype", "float32"))))
    return tuple(inputs)


def load_keras_model(path: Path, kind: SourceKind, *, trust_code: bool = False, custom_objects=()):
    """Load a Keras 3 or tf_keras model file (weights and architecture, not the optimizer).

    Without `trust_code` (or EDGEQUANT_TRUST_CODE=1), a file whose loading would run Python
    (Lambda layers) is refused, and Keras 3 loads in safe mode.
    `custom_objects`: the classes of the custom layers the file names, or 'package.module:Name' strings
    (importing them runs code: they need the trust opt-in too); see `custom_object_classes`.
    """
    trust_code = trusted(trust_code)
    if not trust_code:
        refuse_unsafe_layers(path, kind)
    objects = custom_object_classes(custom_objects, trust_code=trust_code)
    try:
        if kind in ("keras", "h5-keras3"):
            import keras

            return keras.saving.load_model(path, compile=False, safe_mode=not trust_code, custom_objects=objects)
        import tf_keras

        return tf_keras.models.load_model(path, compile=False, safe_mode=not trust_code, custom_objects=objects)
    except Exception as exc:  # Keras raises anything from ValueError to TypeError on a bad file
        text = str(exc).strip()
        unknown = re.search(r"Unknown (?:layer|object)[^'\w]*'?(\w+)|Could not locate (?:class|function) '(\w+)'", text)
        if unknown:
            raise ModelFileError(f"{path}: {unknown_object_message(unknown.group(1) or unknown.group(2))}") from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ModelFileError(f"{path}: cannot load the model ({first[:300]})") from None


def unknown_object_message(name: str) -> str:
    """What to do about a custom layer the model file names and Keras cannot find: every way to name it."""
    return (f"the model uses {name!r}, a custom layer (or object) Keras does not know: name the module that "
            f"defines it, as `model: {{custom_objects: [\"package.module:{name}\"]}}` in the recipe, "
            f"`--custom-objects package.module:{name}` with `edgequant quantize`, or custom_objects=[{name}] in "
            f"Python (edgequant.quantize); importing a module runs its code, so add --trust-code (trust_code=True)")


def custom_object_classes(objects, *, trust_code: bool = False) -> dict[str, Any]:
    """{name: object} for Keras' `custom_objects`, from objects (classes, functions) or 'package.module:Name'
    strings, which are imported here: that runs the module's code, so strings need the trust opt-in."""
    import importlib

    found: dict[str, Any] = {}
    for item in objects or ():
        if not isinstance(item, str):
            found[getattr(item, "__name__", str(item))] = item
            continue
        if not trusted(trust_code):
            raise untrusted(f"custom object {item}: importing it runs that module's code")
        module_name, _, name = item.partition(":")
        try:
            found[name] = getattr(importlib.import_module(module_name), name)
        except ImportError as exc:
            raise ModelFileError(f"custom object {item}: cannot import {module_name} ({exc})") from None
        except AttributeError:
            raise ModelFileError(f"custom object {item}: {module_name} has no {name!r}") from None
    return found


def export_model(
    path: Path, workdir: Path, input_shape: list[int] | None = None, *, trust_code: bool = False, custom_objects=()
) -> ExportedModel:
    """Export the model at `path` once, into `workdir`, for every conversion of the build."""
    kind = source_kind(path)
    sha = file_sha256(path)
    if kind == "saved_model":
        if input_shape is not None:
            raise ModelFileError(f"{path}: input_shape cannot override a SavedModel's signature; export it again")
        return ExportedModel(path, saved_model_inputs(path), kind, sha)
    if kind == "onnx":
        from edgequant.model.onnx_import import import_onnx  # needs the onnx extra: imported only for .onnx models

        saved_model, inputs, onnx_source = import_onnx(path, sha, input_shape)
        return ExportedModel(saved_model, inputs, kind, sha, onnx=onnx_source)
    model = load_keras_model(path, kind, trust_code=trust_code, custom_objects=custom_objects)
    return export_keras_model(model, workdir, input_shape=input_shape, kind=kind, sha256=sha)


def export_keras_model(
    model, workdir: Path, *, input_shape: list[int] | None = None, kind: SourceKind = "in-memory", sha256: str = ""
) -> ExportedModel:
    """Export an in-memory Keras 3 or tf_keras model to `workdir/saved_model`.

    A one-input model's input is named "input". A model with several inputs keeps its inputs' names (what its
    data is keyed by), and one with several outputs its output layers' names (what the report calls them).
    """
    import tensorflow as tf

    several = len(model.inputs) > 1
    recurrent = recurrent_layers(model)
    batch = 1 if recurrent else None  # TFLite lowers a recurrent loop's tensor lists only with a known batch
    if several and input_shape is not None:
        raise ModelFileError(f"input_shape sets the input shape of a model with one input; this model has "
                             f"{len(model.inputs)} inputs ({', '.join(tensor_names(model.inputs))})")
    specs, inputs = [], []
    for name, tensor in zip(tensor_names(model.inputs) if several else ["input"], model.inputs):
        dtype = tf.as_dtype(tensor.dtype)
        shape = list(input_shape) if input_shape is not None else [d if d is not None else -1 for d in tensor.shape[1:]]
        specs.append(tf.TensorSpec([batch, *[None if d == -1 else d for d in shape]], dtype, name=name))
        inputs.append(InputSpec(name, tuple(shape), dtype.name))
    output_names = tensor_names(model.outputs, getattr(model, "output_names", None)) if len(model.outputs) > 1 else None
    target = workdir / "saved_model"
    try:
        if not several and output_names is None and _is_keras3(model):
            model.export(str(target), format="tf_saved_model", input_signature=specs, verbose=False)
        else:
            def serve(*xs):
                y = model(list(xs) if several else xs[0], training=False)
                # a dict of outputs (flattened in sorted key order, as model.outputs is) or a list
                return dict(zip(output_names, tf.nest.flatten(y))) if output_names else y

            if _is_keras3(model):
                import keras

                archive = keras.export.ExportArchive()
                archive.track(model)
                archive.add_endpoint("serve", serve, input_signature=specs)
                archive.write_out(str(target), verbose=False)
            else:
                function = tf.function(serve, input_signature=specs)
                tf.saved_model.save(model, str(target), signatures={"serving_default": function.get_concrete_function()})
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"cannot export the model to a SavedModel ({first[:300]})") from None
    return ExportedModel(target, tuple(inputs), kind, sha256, model, recurrent=recurrent)


def all_layers(model) -> list:
    """Every layer of a Keras model, nested models' layers too (after the nested model itself)."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):  # a nested model, such as a Sequential preprocessing block
            out += all_layers(layer)
    return out


def recurrent_layers(model) -> tuple[str, ...]:
    """Names of the model's recurrent layers: every RNN subclass (LSTM, GRU, SimpleRNN, ConvLSTM...), and
    Bidirectional wrappers, in Keras 3 and tf_keras."""
    found = [layer.name for layer in all_layers(model)
             if {"RNN", "Bidirectional"} & {cls.__name__ for cls in type(layer).__mro__}]
    return tuple(found)


def _export_unrolled(exported: ExportedModel) -> Path | None:
    """The exported Keras model again, with `unroll=True` in every recurrent layer; None where it cannot be
    (a subclassed model, or a sequence of unknown length)."""
    model = exported.keras_model
    try:
        config = model.get_config()
        _set_unroll(config)
        # the model's own layer classes, so that custom layers rebuild as they loaded
        classes = {type(layer).__name__: type(layer) for layer in all_layers(model)}
        copy = type(model).from_config(config, custom_objects=classes)
        copy.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - Keras raises anything from NotImplementedError to ValueError here
        return None
    folder = exported.saved_model_dir.parent / "unrolled"
    folder.mkdir(exist_ok=True)
    shape = list(exported.input.shape) if len(exported.inputs) == 1 else None
    try:
        return export_keras_model(copy, folder, input_shape=shape).saved_model_dir
    except ModelFileError:
        return None


def _set_unroll(config) -> None:
    if isinstance(config, dict):
        if "unroll" in config:
            config["unroll"] = True
        for value in config.values():
            _set_unroll(value)
    elif isinstance(config, list):
        for value in config:
            _set_unroll(value)


def tensor_names(tensors, names=None) -> list[str]:
    """Unique signature-safe names for a model's input or output tensors (their layers' names where known)."""
    out: list[str] = []
    for i, tensor in enumerate(tensors):
        raw = names[i] if names and i < len(names) else getattr(tensor, "name", "") or f"tensor_{i}"
        name = re.sub(r"\W", "_", str(raw).split(":")[0]) or f"tensor_{i}"
        name = name if not name[0].isdigit() else f"t_{name}"
        while name in out:
            name += f"_{i}"
        out.append(name)
    return out


def _is_keras3(model) -> bool:
    return type(model).__module__.startswith("keras.")  # tf_keras models live in "tf_keras.src..."
