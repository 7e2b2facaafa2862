"""One variant of an exported model into .tflite bytes: the TFLiteConverter settings per mode.

| mode     | weights         | activations                     | converter settings                              |
|----------|-----------------|---------------------------------|-------------------------------------------------|
| float32  | float32         | float32                         | none                                            |
| float16  | float16         | float32                         | DEFAULT + supported_types=[float16]             |
| dynamic  | int8            | float32, quantized at run time  | DEFAULT                                         |
| int8     | int8            | int8 (calibrated)               | DEFAULT + representative data + BUILTINS_INT8   |
| int16x8  | int8            | int16 (calibrated)              | DEFAULT + representative data + 16x8 op set     |
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgequant.errors import BuildError, EdgequantError

RepresentativeData = Callable[[], Iterator["np.ndarray | dict[str, np.ndarray]"]]
"""Calls give a fresh stream of float32 input samples, without the batch dimension (for a model with several
inputs, a dict {input name: sample})."""


def make_converter(saved_model_dir: Path):
    """A fresh TFLiteConverter for the SavedModel, which is read once however many conversions follow.

    TFLiteConverter.from_saved_model loads the SavedModel, and each `convert()` loads it twice more, for
    the signature's graph and for debug info: 4.5 s of each MobileNetV2 conversion, more than the MLIR
    conversion itself (1.8 s). All three depend only on the files, so they are read once per export and
    each conversion runs the converter's own steps from there (`_convert_from_saved_model`, what
    `convert()` ends with): the same bytes as `from_saved_model(...).convert()`, tested.
    """
    import tensorflow as tf

    key = _files_key(saved_model_dir)
    read = _READ.get(key)
    if read is None:
        read = _read_saved_model(str(saved_model_dir))
        if read is None:  # a SavedModel TF reads another way: let it, and name any problem
            return tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
        _READ.clear()  # one export at a time is converted: keep only its graph
        _READ[key] = read
    return _read_once_converter()(str(saved_model_dir), read)


_READ: dict[tuple, tuple] = {}


def _files_key(saved_model_dir: Path) -> tuple:
    pb = Path(saved_model_dir) / "saved_model.pb"
    try:
        st = pb.stat()
    except OSError:
        return (str(saved_model_dir), None)
    return (str(Path(saved_model_dir).resolve()), st.st_ino, st.st_size, st.st_mtime_ns)


def _read_saved_model(saved_model_dir: str) -> tuple | None:
    """(tags, signature keys, graph_def, debug info), as from_saved_model and `convert()` read them, from one
    load; None for a SavedModel they would read another way."""
    import tensorflow as tf
    from tensorflow.lite.python import lite
    from tensorflow.python.eager import context

    tags = {tf.saved_model.SERVING}
    try:
        with context.eager_mode():
            loaded = lite._load(saved_model_dir, tags)
    except Exception:
        return None
    keys = list(loaded.signatures.keys())
    if not keys:
        return None
    if len(keys) > 1 and hasattr(loaded, "serve") and not hasattr(loaded, "_default_save_signature"):
        keys = ["serving_default"]  # from_saved_model's rule for the endpoint Keras' `model.export` writes
    probe = lite.TFLiteSavedModelConverterV2(saved_model_dir, tags, keys)
    if not probe.saved_model_dir:  # TF converts this one from concrete functions
        return None
    graph_def, _, _ = probe._load_saved_model(saved_model_dir, tags)
    debug_info = lite._get_debug_info(lite._convert_debug_info_func(loaded.graph_debug_info), graph_def)
    return tags, keys, graph_def, debug_info


@lru_cache(maxsize=1)
def _read_once_converter() -> type:
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as conversion_metadata_fb
    from tensorflow.lite.python import lite

    class ReadOnceConverter(lite.TFLiteSavedModelConverterV2):
        def __init__(self, saved_model_dir: str, read: tuple):
            tags, names, self._graph_def, self._read_debug_info = read
            # what from_saved_model tells the constructor, for the conversion metadata in the file
            lite.TFLiteConverterBase._set_original_model_type(conversion_metadata_fb.ModelType.TF_SAVED_MODEL)
            super().__init__(saved_model_dir, tags, names)

        def convert(self):
            if not self.saved_model_dir or not self.experimental_new_converter:
                return super().convert()
            return self._convert_and_export_metrics(ReadOnceConverter._convert_read)

        def _convert_read(self):
            self._debug_info = self._read_debug_info
            return self._convert_from_saved_model(self._graph_def)

    return ReadOnceConverter


def configure(converter, variant, representative: RepresentativeData | None) -> None:
    """Set `converter` up for `variant` (any recipe variant but qat, whose model is trained first)."""
    import tensorflow as tf

    mode = variant.mode
    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "dynamic":
        pass
    elif mode in ("int8", "int16x8", "qat"):
        if mode != "qat":  # a QAT model carries its own ranges; int8/int16x8 are calibrated
            if representative is None:
                raise BuildError(f"variant {variant.name!r} ({mode}) needs representative data")
            converter.representative_dataset = as_converter_dataset(representative)
        if mode == "int16x8":
            ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
            converter.target_spec.supported_ops = [ops]
            io_types = {"float32": tf.float32, "int16": tf.int16}
        else:
            if mode == "int8":
                # Not for qat: TF 2.21 checks an int8-only op set for a representative dataset before it
                # reads the graph, so it never sees the fake-quant nodes that make a QAT model int8.
                converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            io_types = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
        converter.inference_input_type = io_types[variant.input_type]
        converter.inference_output_type = io_types[variant.output_type]
        if mode == "int8" and not variant.per_channel:
            # TFLiteConverter has no public switch for per-tensor weight scales.
            converter._experimental_disable_per_channel = True
    else:
        raise BuildError(f"variant {variant.name!r}: mode {mode!r} is not converted here")


def as_converter_dataset(representative: RepresentativeData) -> Callable[[], Iterable]:
    """The converter's representative dataset: a one-sample batch per sample, as a list for a one-input model,
    and keyed by signature input name for a model with several (samples are then dicts)."""
    def gen():
        for x in representative():
            if isinstance(x, dict):
                yield {name: sample_array(v)[None] for name, v in x.items()}
            else:
                yield [sample_array(x)[None]]

    return gen


def sample_array(x) -> np.ndarray:
    """A calibration sample as the converter's interpreter takes it: an integer input (token ids, uint8 pixels)
    keeps its dtype, since TFLite refuses to set float32 data on an int32 tensor; everything else is float32."""
    x = np.asarray(x)
    return x if x.dtype.kind in "iub" else x.astype(np.float32, copy=False)


def convert(converter, label: str) -> bytes:
    """Run the converter; errors from the data stream pass through, converter failures become BuildError."""
    try:
        return bytes(converter.convert())
    except EdgequantError:
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, EdgequantError):  # raised inside the representative dataset generator
            raise cause from None
        raise BuildError(f"{label}: conversion failed: {_converter_message(str(exc), type(exc).__name__)}") from None


TENSOR_LIST_FAILURE = "Lowering tensor list ops is failed"
_SELECT_OPS = re.compile(r"TF Select ops: ([\w, .]+?)(?:\.?\s*\n|\.\s|$|\\n)")


def ops_without_builtin_kernel(text: str) -> list[str]:
    """The TensorFlow ops the converter's error says have no builtin TFLite kernel ("TF Select ops: MaxPool3D")."""
    ops: list[str] = []
    for match in _SELECT_OPS.finditer(text):
        ops += [op.strip() for op in match.group(1).split(",") if op.strip() and op.strip() not in ops]
    return ops
UNKNOWN_BATCH_LOOP = (
    "a recurrent loop (TensorList ops) with an unknown batch size, which TFLite's builtin ops cannot run: "
    "edgequant exports .keras and .h5 models with a batch of 1 itself, but converts a SavedModel as it is: "
    "export it with a batch of 1, e.g. model.export(path, input_signature=[tf.TensorSpec([1, ...])])"
)


def _converter_message(text: str, default: str) -> str:
    """The converter's error in one line: what it means where edgequant knows it, else its last line."""
    if TENSOR_LIST_FAILURE in text:  # its own advice names private converter flags, with a literal '\\n'
        return UNKNOWN_BATCH_LOOP
    ops = ops_without_builtin_kernel(text)
    if ops:
        return (f"TFLite has no builtin kernel for {', '.join(ops)} (TensorFlow op{'s' if len(ops) > 1 else ''} "
                "that only TF Select, the Flex delegate, runs); edgequant builds only artifacts that LiteRT's "
                "builtin ops run")
    lines = text.strip().splitlines()
    return lines[-1] if lines else default


def calibrate_only(saved_model_dir: Path, variant, representative: RepresentativeData) -> bytes:
    """The float model with each activation's calibrated min/max recorded: the converter's first int8 step.

    TF exposes the split only through a private flag, the one its QuantizationDebugger sets.
    """
    converter = make_converter(saved_model_dir)
    configure(converter, variant, representative)
    converter._experimental_calibrate_only = True
    return convert(converter, f"variant {variant.name!r} ({variant.mode}): calibration")


def quantize_calibrated(calibrated: bytes, variant) -> bytes:
    """The converter's second int8 step on a calibrated model: what `convert()` runs after calibration."""
    import tensorflow as tf
    from tensorflow.lite.python import convert as tf_convert

    io_types = {"float32": tf.float32, "int8": tf.int8, "uint8": tf.uint8}
    try:
        return bytes(tf_convert.mlir_quantize(
            calibrated, disable_per_channel=not variant.per_channel,
            input_data_type=io_types[variant.input_type], output_data_type=io_types[variant.output_type],
        ))
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise BuildError(f"variant {variant.name!r}: quantization failed: {text[-1] if text else exc}") from None


def convert_variant(saved_model_dir: Path, variant, representative: RepresentativeData | None = None) -> bytes:
    converter = make_converter(saved_model_dir)
    configure(converter, variant, representative)
    return convert(converter, f"variant {variant.name!r} ({variant.mode})")
