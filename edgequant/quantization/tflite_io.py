"""Integer inputs and outputs for a .tflite whose edges are float, by adding a DEQUANTIZE or QUANTIZE op.

TFLiteConverter sets integer I/O types by dropping or retyping the QUANTIZE op after an
input (the DEQUANTIZE op before an output), so it cannot when a layer kept in float reads
the input or writes the output itself. This adds the op it would need instead: a new
integer input tensor and a DEQUANTIZE into the old float one, or a QUANTIZE from the old
float output into a new integer one, with the scale and zero point calibration gave that
tensor.

Also: a copy of a model with a dynamic input axis whose inputs start at a concrete shape
(`with_input_shapes`), for the tools that run a file as it is (the emulated devices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

_TYPES = {"int8": 9, "uint8": 3}  # TensorType
_DEQUANTIZE, _QUANTIZE = 6, 114  # BuiltinOperator


def add_integer_edges(
    model: bytes,
    inputs: Mapping[str, tuple[str, float, int]],
    outputs: Mapping[str, tuple[str, float, int]],
) -> bytes:
    """`model` with the named float inputs/outputs made integer: {tensor name: (dtype, scale, zero point)}."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    graph = m.subgraphs[0]
    graph.inputs, graph.outputs = [int(i) for i in graph.inputs], [int(i) for i in graph.outputs]
    names = {_name(t): i for i, t in enumerate(graph.tensors)}

    def integer_twin(index: int, dtype: str, scale: float, zero_point: int) -> int:
        old = graph.tensors[index]
        tensor = schema.TensorT()
        tensor.shape, tensor.shapeSignature, tensor.name = old.shape, old.shapeSignature, old.name
        tensor.type, tensor.buffer = _TYPES[dtype], old.buffer
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [float(scale)], [int(zero_point)]
        old.name = _name(old).encode() + b"_float"
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    for name, (dtype, scale, zero_point) in inputs.items():
        old = names[name]
        new = integer_twin(old, dtype, scale, zero_point)
        graph.operators.insert(0, _op(schema, _opcode(schema, m, _DEQUANTIZE), [new], [old]))
        _replace(graph.inputs, old, new)
        _retarget_signatures(m, "inputs", old, new)
    for name, (dtype, scale, zero_point) in outputs.items():
        old = names[name]
        new = integer_twin(old, dtype, scale, zero_point)
        graph.operators.append(_op(schema, _opcode(schema, m, _QUANTIZE), [old], [new]))
        _replace(graph.outputs, old, new)
        _retarget_signatures(m, "outputs", old, new)
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_input_shapes(model: bytes, shapes: Sequence[Sequence[int]]) -> bytes:
    """`model` with its inputs (in input order) starting at `shapes`, as if resized before allocation.

    Only the inputs' `shape` changes (their `shape_signature` keeps the dynamic axes): the interpreter sets
    the inputs' dimensions from it at load, and every operator's output shape follows when it allocates,
    exactly as after `resize_tensor_input`.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    graph = m.subgraphs[0]
    if len(shapes) != len(graph.inputs):
        raise ValueError(f"{len(shapes)} shapes for a model with {len(graph.inputs)} inputs")
    for index, shape in zip(graph.inputs, shapes):
        graph.tensors[int(index)].shape = [int(d) for d in shape]
    builder = flatbuffers.Builder(max(1024, len(model) + 1024))
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(tensor) -> str:
    return tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name


def _op(schema, opcode: int, inputs: list[int], outputs: list[int]):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = opcode, inputs, outputs
    return op


def _opcode(schema, model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _replace(indices: list[int], old: int, new: int) -> None:
    indices[indices.index(old)] = new


def _retarget_signatures(model, side: str, old: int, new: int) -> None:
    for signature in model.signatureDefs or []:
        for entry in getattr(signature, side) or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
