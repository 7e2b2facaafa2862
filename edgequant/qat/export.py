"""A trained QAT model into full-integer .tflite bytes, checked by reading the file back.

The model goes through a SavedModel (one serving signature, input named "input" like every
other variant) and TFLiteConverter.from_saved_model, configured by `edgequant.quantization.convert` for
mode "qat", which leaves the converter on its default op set (see `configure`). The
fake-quant ranges make every operator int8; whether they did is checked below on the file
itself, and a model with float operators left is refused unless full_integer=False.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from pydantic import ValidationError

from edgequant.errors import BuildError, InputError
from edgequant.model.tflite_file import TFLiteModel, read_tflite
from edgequant.process.scratch import scratch_prefix
from edgequant.quantization.convert import configure, convert, make_converter
from edgequant.recipe.schema import QatVariant

# Tensor types an integer operator may use: int8 activations and weights (int4 weights with weight_bits 4),
# int32 biases and shapes.
_INTEGER_DTYPES = frozenset({"int8", "int4", "uint8", "int32", "int64", "bool"})


def export(
    qat_model,
    input_type: str = "int8",
    output_type: str = "int8",
    *,
    full_integer: bool = True,
    input_shape: list[int] | None = None,
    name: str = "qat",
) -> bytes:
    """The .tflite bytes of a trained QAT model (from `prepare`), with int8 weights and activations.

    input_type / output_type: "int8", "uint8" or "float32", as in a recipe's qat variant.
    full_integer: refuse a converted model in which an operator still computes in float
        (a layer left out of `prepare(..., layers=...)` or given a NoOpQuantizeConfig).
    input_shape: override the input shape (without the batch dimension), as the recipe's model.input_shape.
    """
    from edgequant.qat.prepare import is_qat_model

    if not is_qat_model(qat_model):
        raise InputError("export needs a QAT model: wrap the float model with qat.prepare(model) and fine-tune it first")
    try:
        variant = QatVariant(name=name, input_type=input_type, output_type=output_type)
    except ValidationError as exc:
        field = ".".join(str(p) for p in exc.errors()[0]["loc"])
        raise InputError(f"{field}: {exc.errors()[0]['msg']}") from None
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("qat")) as work:
        saved_model = _save_serving(qat_model, Path(work) / "saved_model", input_shape)
        converter = make_converter(saved_model)
        configure(converter, variant, None)
        data = convert(converter, f"variant {name!r} (qat)")
    if full_integer:
        floats = float_operators(read_tflite(data))
        if floats:
            raise BuildError(
                f"variant {name!r} (qat): the converted model is not full-integer: {', '.join(floats)} "
                "compute in float (layers tfmot left unquantized); quantize every layer, or export with "
                "full_integer=False to accept a mixed model"
            )
    return data


def float_operators(model: TFLiteModel) -> list[str]:
    """Operators that read or write a float tensor, as 'OP#index', except the QUANTIZE of a float
    model input and the DEQUANTIZE of a float model output (the float I/O a user asked for)."""
    inputs, outputs = set(model.input_indices), set(model.output_indices)
    found = []
    for op in model.operators:
        if op.op_type == "QUANTIZE" and set(op.inputs) <= inputs:
            continue
        if op.op_type == "DEQUANTIZE" and set(op.outputs) <= outputs:
            continue
        tensors = [model.tensors[i] for i in (*op.inputs, *op.outputs) if i >= 0]
        if any(t.dtype not in _INTEGER_DTYPES for t in tensors):
            found.append(f"{op.op_type}#{op.index}")
    return found


def _save_serving(model, target: Path, input_shape: list[int] | None) -> Path:
    import tensorflow as tf

    if len(model.inputs) != 1:
        raise InputError(f"the model has {len(model.inputs)} inputs; edgequant supports one input")
    spec = model.inputs[0]
    shape = list(input_shape) if input_shape is not None else list(spec.shape[1:])
    signature = tf.TensorSpec([None, *shape], tf.as_dtype(spec.dtype), name="input")
    serve = tf.function(lambda x: model(x, training=False), input_signature=[signature])
    try:
        tf.saved_model.save(model, str(target), signatures={"serving_default": serve.get_concrete_function()})
    except Exception as exc:  # TensorFlow raises many types while tracing a model
        text = str(exc).strip().splitlines()
        raise BuildError(f"cannot export the QAT model to a SavedModel: {text[0] if text else type(exc).__name__}") from None
    return target
