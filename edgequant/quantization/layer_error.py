"""Where int8 quantization hurts: per-layer error, and int8 models that keep chosen layers in float.

Built on TFLiteConverter's QuantizationDebugger: the model is calibrated once, then
quantized as often as needed with different layers or op types kept in float
(no recalibration), and each quantized layer's output is compared with its float
counterpart on a few samples (NumericVerify ops).

The error of a layer is reported as RMSE in units of its output's quantization
step (`rmse / scale`): about 0.29 is the floor of rounding noise, and a layer far
above it loses information the rest of the model may not recover.

The debugger quantizes with float input and output, or int8 for both. Any other pair
of I/O types (uint8, or int8 on one side only) is analysed on the variant's float-I/O
twin: the same int8 quantization inside, with QUANTIZE and DEQUANTIZE ops at the
edges. The variant's own types are then set on every model it hands out, the way
TFLiteConverter sets them after its own quantization.

The debug samples are handed to the debugger already quantized for an int8 input: TF 2.21's
debugger quantizes float samples itself only when `if scales and zero_points` holds, which is
false for the array [0] (an input calibrated on [-1, 1] data has zero point 0), and then feeds
the float samples to the int8 input ("Cannot set tensor: Got value of type FLOAT32 but
expected type INT8"). It also casts without clipping, so a sample outside the calibrated range
wrapped around; `runtime.quantize_input` clips.
"""

from __future__ import annotations

import csv
import io
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgequant.errors import BuildError, InputError
from edgequant.quantization.convert import RepresentativeData, configure, make_converter
from edgequant.quantization.tflite_io import add_integer_edges

DEBUG_SECONDS = 60.0  # the per-layer comparison stops taking debug samples after this long...
MIN_DEBUG_SAMPLES = 4  # ...once it has at least this many (a long-sequence model's instrumented invoke takes seconds)
ROUNDING_FLOOR = 1 / math.sqrt(12)  # RMSE of uniform rounding noise, in quantization steps

# Ops that pass an int8 tensor on with its scale: an outlier tensor stays an outlier through them.
PASS_THROUGH_OPS = frozenset({
    "MAX_POOL_2D", "RESHAPE", "SQUEEZE", "EXPAND_DIMS", "TRANSPOSE", "PAD", "PADV2", "SLICE", "STRIDED_SLICE",
    "SPACE_TO_DEPTH", "DEPTH_TO_SPACE", "GATHER", "SPLIT", "SPLIT_V", "PACK", "UNPACK", "RELU", "RELU6",
})


@dataclass(frozen=True)
class LayerError:
    layer: str  # the first name of the layer's output tensor: what `float_layers` entries match
    op: str
    tensor: str
    elements: int
    rmse: float
    max_abs_error: float
    mean_error: float
    scale: float

    @property
    def rmse_steps(self) -> float:
        return self.rmse / self.scale if self.scale > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "rmse_steps": self.rmse_steps}


class QuantizationAnalysis:
    """One calibration of an int8 variant, quantized on demand with layers or op types kept in float."""

    def __init__(
        self,
        saved_model_dir: Path,
        variant,
        representative: RepresentativeData,
        debug_samples: Sequence[np.ndarray],
        edit_calibration: Callable[[bytes], bytes] | None = None,
    ):
        """`edit_calibration` rewrites the calibrated model (its recorded ranges) before every quantization."""
        import tensorflow as tf

        self.input_type, self.output_type = variant.input_type, variant.output_type
        # int8 for both: the debugger quantizes the edges itself, and puts a DEQUANTIZE before a float layer that
        # reads the input. Any other pair is set on the float-I/O twin's models (`_with_io_types`).
        self._fully_quantize = (self.input_type, self.output_type) == ("int8", "int8")
        converter = make_converter(saved_model_dir)
        configure(converter, variant.model_copy(update={"input_type": "float32", "output_type": "float32"}),
                  representative)
        # Layers kept in float need the float builtin kernels beside the int8 ones.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.TFLITE_BUILTINS]
        samples = [{k: np.asarray(v, dtype=np.float32) for k, v in x.items()} if isinstance(x, dict)
                   else np.asarray(x, dtype=np.float32) for x in debug_samples]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the debugger runs tf.lite.Interpreter, which warns it is deprecated
            try:
                self._debugger = tf.lite.experimental.QuantizationDebugger(
                    converter=converter,
                    debug_dataset=lambda: self._debug_inputs(samples),
                    debug_options=self._options((), ()),
                )
            except (ValueError, RuntimeError) as exc:
                raise BuildError(f"variant {variant.name!r}: quantization analysis failed: {exc}") from None
            if edit_calibration is not None:
                self._debugger.calibrated_model = edit_calibration(self._debugger.calibrated_model)
                self._debugger.options = self._options((), ())  # quantizes again from the edited ranges
        self._layers: list[LayerError] | None = None
        self._plain = None
        self.debug_samples_used = 0  # how many debug samples the last comparison ran (DEBUG_SECONDS bounds it)

    def _debug_inputs(self, samples: Sequence):
        """Each debug sample as the list of one-sample batches the debugger feeds, in its model's input order (a
        several-input sample is a dict by input name), each already in the input's dtype (see the module)."""
        from edgequant.model.runtime import quantize_input
        from edgequant.model.tflite_file import read_tflite

        inputs = read_tflite(bytes(self._debugger.quant_model)).inputs
        details = [{"dtype": t.dtype, "quantization": (t.quantization.scale[0], t.quantization.zero_point[0])
                    if t.quantization is not None else (0.0, 0)} for t in inputs]
        started = time.perf_counter()
        self.debug_samples_used = 0
        for x in samples:
            # the debugger invokes the instrumented model between two samples: stop once they took DEBUG_SECONDS
            if self.debug_samples_used >= MIN_DEBUG_SAMPLES and time.perf_counter() - started > DEBUG_SECONDS:
                return
            arrays = [_by_tensor_name(x, t.name) for t in inputs] if isinstance(x, dict) else [x]
            yield [quantize_input(np.asarray(a)[None], d) for a, d in zip(arrays, details)]
            self.debug_samples_used += 1

    @property
    def on_twin(self) -> bool:
        """True when the layer errors come from a float-I/O twin, because the variant mixes I/O types or uses uint8."""
        return not self._fully_quantize and (self.input_type, self.output_type) != ("float32", "float32")

    def _options(self, nodes: Sequence[str], ops: Sequence[str]):
        import tensorflow as tf

        return tf.lite.experimental.QuantizationDebugOptions(
            denylisted_nodes=list(nodes) or None, denylisted_ops=list(ops) or None, fully_quantize=self._fully_quantize
        )

    def layer_errors(self) -> list[LayerError]:
        """Every quantized layer's output error with the whole model in int8, worst first."""
        if self._layers is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._debugger.options = self._options((), ())
                self._debugger.run()
            dump = io.StringIO()
            self._debugger.layer_statistics_dump(dump)
            dump.seek(0)
            self._layers = sorted(
                (_row_to_layer(row) for row in csv.DictReader(dump)), key=lambda e: e.rmse_steps, reverse=True
            )
        return self._layers

    def tensor_names(self, float_layers: Sequence[str]) -> list[str]:
        """The full tensor names the debugger needs for `float_layers` (layer labels or name fragments)."""
        tensors = [e.tensor for e in self.layer_errors()]
        names = []
        for entry in float_layers:
            matches = [t for t in tensors if entry == t or entry in t.split(";") or entry in t]
            if not matches:
                known = ", ".join(e.layer for e in self.layer_errors()[:6])
                raise InputError(f"float_layers: {entry!r} matches no quantized layer (some are: {known}, ...)")
            names.extend(m for m in matches if m not in names)
        return names

    def float_group(self, layer: str) -> list[str]:
        """`layer` and the ops that consume its output, through pass-through ops to the first compute ops.

        A tensor stays float only if its producer and every consumer run in float: keeping
        just the producer in float quantizes its output again for the next int8 op.
        """
        model = self._plain_model()
        producer = next((t for t in model.tensors if not t.is_constant and t.name.split(";")[0] == layer), None)
        if producer is None:
            return [layer]
        quantized = {e.layer for e in self.layer_errors()}
        group, frontier = [layer], [producer.index]
        while frontier:
            tensor = frontier.pop()
            for op in model.operators:
                if tensor not in op.inputs or op.op_type in ("QUANTIZE", "DEQUANTIZE"):
                    continue
                for out in op.outputs:
                    name = model.tensors[out].name.split(";")[0]
                    if name in quantized and name not in group:
                        group.append(name)
                        if op.op_type in PASS_THROUGH_OPS:
                            frontier.append(out)
        return group

    def _plain_model(self):
        """The model the debugger quantizes with nothing in float, read (its tensors and ops)."""
        from edgequant.model.tflite_file import read_tflite

        if self._plain is None:
            self._plain = read_tflite(self._twin_model((), ()))
        return self._plain

    def _integer_edges(self, info) -> dict[str, dict[str, tuple[str, float, int]]]:
        """The float inputs/outputs of `info` that should be integer, with the scale and zero point calibration
        gave them: those of the QUANTIZE after the input (DEQUANTIZE before the output) with nothing in float."""
        plain = self._plain_model()
        edges: dict[str, dict[str, tuple[str, float, int]]] = {"inputs": {}, "outputs": {}}
        for side, wanted, tensors in (("inputs", self.input_type, info.inputs),
                                      ("outputs", self.output_type, info.outputs)):
            for tensor in tensors:
                if tensor.dtype != "float32" or wanted == "float32":
                    continue
                edge = next((t for t in getattr(plain, side) if t.name == tensor.name), None)
                q = _edge_quantization(plain, edge.index, side) if edge is not None else None
                if q is not None:
                    scale, zero_point = q
                    edges[side][tensor.name] = (wanted, scale, zero_point + (128 if wanted == "uint8" else 0))
        return edges

    def quantized_model(self, float_layers: Sequence[str] = (), float_ops: Sequence[str] = ()) -> bytes:
        """The int8 model with `float_layers` and op types `float_ops` kept in float, with the variant's I/O types.

        Where a layer kept in float reads the input (writes the output) that is to be an integer,
        a DEQUANTIZE (QUANTIZE) op with the calibrated scale is added (`edgequant.quantization.tflite_io`).
        Raises IoTypeConflict if calibration gave that edge no int8 scale (its first op is not
        quantized even with nothing kept in float).
        """
        return self._with_io_types(self._twin_model(float_layers, float_ops), float_layers, float_ops)

    def _twin_model(self, float_layers: Sequence[str], float_ops: Sequence[str]) -> bytes:
        nodes = self.tensor_names(float_layers) if float_layers else []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self._debugger.options = self._options(nodes, [op.upper() for op in float_ops])
            return bytes(self._debugger.get_nondebug_quantized_model())

    def _with_io_types(self, model: bytes, float_layers: Sequence[str], float_ops: Sequence[str]) -> bytes:
        if not self.on_twin:
            return model
        import tensorflow as tf

        # The converter's own step for inference_input_type/inference_output_type; it has no public name.
        from tensorflow.lite.python.util import modify_model_io_type

        from edgequant.model.tflite_file import read_tflite

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            typed = bytes(modify_model_io_type(model, getattr(tf, self.input_type), getattr(tf, self.output_type)))
        info = read_tflite(typed)
        edges = self._integer_edges(info)
        if edges["inputs"] or edges["outputs"]:  # a float layer reads the input or writes the output itself
            typed = add_integer_edges(typed, **edges)
            info = read_tflite(typed)
        for side, wanted, tensors in (("input", self.input_type, info.inputs),
                                      ("output", self.output_type, info.outputs)):
            got = next((t.dtype for t in tensors if t.dtype != wanted), None)
            if got is not None:
                kept = ", ".join([*float_layers, *float_ops])
                raise IoTypeConflict(
                    f"{side}_type {wanted}: the model's {side} stays {got} (calibration gave it no int8 scale) "
                    f"because a layer kept in float "
                    f"({kept}) {'reads the input' if side == 'input' else 'writes the output'} directly; "
                    f"use {side}_type: float32, or keep that layer in int8"
                )
        return typed


def _by_tensor_name(sample: dict, tensor: str) -> np.ndarray:
    """The array of `sample` for the input tensor `tensor` (a SavedModel input 'x' becomes 'serving_default_x:0')."""
    base = tensor.split(":")[0]
    for name, array in sample.items():
        if base in (name, f"serving_default_{name}"):
            return array
    raise BuildError(f"per-layer analysis: no data for the model's input tensor {tensor!r} "
                     f"(the data's inputs are {', '.join(sample)})")


def _edge_quantization(model, index: int, side: str) -> tuple[float, int] | None:
    """int8 (scale, zero point) of model input `index` (its QUANTIZE op's output) or output (its DEQUANTIZE's input)."""
    for op in model.operators:
        if side == "inputs" and op.op_type == "QUANTIZE" and op.inputs[0] == index:
            integer = model.tensors[op.outputs[0]]
        elif side == "outputs" and op.op_type == "DEQUANTIZE" and op.outputs[0] == index:
            integer = model.tensors[op.inputs[0]]
        else:
            continue
        if integer.dtype == "int8" and integer.quantization is not None:
            return integer.quantization.scale[0], integer.quantization.zero_point[0]
    return None


class IoTypeConflict(InputError):
    """The layers kept in float leave the model's input or output in float, but the variant asks for integers."""


def _row_to_layer(row: dict) -> LayerError:
    tensor = row["tensor_name"]
    return LayerError(
        layer=tensor.split(";")[0],
        op=row["op_name"],
        tensor=tensor,
        elements=int(float(row["num_elements"])),
        rmse=math.sqrt(max(float(row["mean_squared_error"]), 0.0)),
        max_abs_error=float(row["max_abs_error"]),
        mean_error=float(row["mean_error"]),
        scale=float(row["scale"]),
    )
