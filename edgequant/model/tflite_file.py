"""Read a .tflite flatbuffer without running it: tensors, operators, quantization.

Every stage that needs to know what is in an artifact (the manifest, `inspect`,
the XNNPACK coverage analysis, the device memory model, `push`) reads it here,
from the file itself rather than from a converter's promises.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgequant.errors import ModelFileError

_FILE_IDENTIFIER = b"TFL3"


@dataclass(frozen=True)
class Quantization:
    """Affine quantization: real = scale * (q - zero_point), per tensor or per `axis`."""

    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    def to_dict(self) -> dict:
        return {"scale": list(self.scale), "zero_point": list(self.zero_point), "axis": self.axis}


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    quantization: Quantization | None
    constant_bytes: int  # size of the tensor's weight buffer; 0 for activations

    @property
    def is_constant(self) -> bool:
        return self.constant_bytes > 0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "shape": list(self.shape),
            "shape_signature": list(self.shape_signature),
            "dtype": self.dtype,
            "quantization": self.quantization.to_dict() if self.quantization else None,
        }


@dataclass(frozen=True)
class Operator:
    index: int
    op_type: str  # builtin name such as CONV_2D, or CUSTOM:<name>
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class TFLiteModel:
    """What a .tflite file holds. Only the main subgraph's tensors and operators."""

    size_bytes: int
    sha256: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    input_indices: tuple[int, ...]
    output_indices: tuple[int, ...]
    num_subgraphs: int
    description: str = ""

    @property
    def inputs(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.input_indices]

    @property
    def outputs(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.output_indices]

    def op_counts(self) -> Counter:
        return Counter(op.op_type for op in self.operators)

    @property
    def custom_ops(self) -> list[str]:
        return sorted({op.op_type[7:] for op in self.operators if op.op_type.startswith("CUSTOM:")})

    @property
    def weight_bytes(self) -> int:
        return sum(t.constant_bytes for t in self.tensors)

    @property
    def activation_bytes(self) -> int:
        """Bytes of every non-constant tensor at its static shape (an upper bound on arena use)."""
        return sum(
            _nbytes(t.shape, t.dtype) for t in self.tensors if not t.is_constant and all(d > 0 for d in t.shape)
        )

    def tensor_dtypes(self, *, constant: bool) -> Counter:
        return Counter(t.dtype for t in self.tensors if t.is_constant == constant)


_ITEMSIZE = {
    "float32": 4, "float16": 2, "float64": 8, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2,
    "int32": 4, "uint32": 4, "int64": 8, "uint64": 8, "bool": 1, "int4": 1, "bfloat16": 2,
}


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * _ITEMSIZE.get(dtype, 4)


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def read_tflite(source: str | Path | bytes) -> TFLiteModel:
    """Parse a .tflite file (path or bytes). Raises ModelFileError if it is not a valid one.

    The flatbuffer is untrusted input: every index in it is checked, and whatever the
    generated parser raises on a corrupt file becomes a ModelFileError.
    """
    from ai_edge_litert import schema_py_generated as schema

    label = "<bytes>"
    if isinstance(source, (str, Path)):
        path = Path(source)
        label = str(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such .tflite file")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelFileError(f"{path}: cannot read ({exc.strerror})") from None
    else:
        data = bytes(source)
    if len(data) < 8 or data[4:8] != _FILE_IDENTIFIER:
        raise ModelFileError(f"{label}: not a .tflite file (no TFL3 flatbuffer identifier)")
    try:
        return _read_model(schema, data)
    except _Corrupt as exc:
        raise ModelFileError(f"{label}: corrupt .tflite file ({exc})") from None
    except Exception as exc:  # the generated parser fails anywhere (struct, index, type, unicode errors)
        raise ModelFileError(f"{label}: corrupt or truncated .tflite file ({type(exc).__name__}: {exc})") from None


class _Corrupt(Exception):
    """An inconsistency this reader found itself (the message says which)."""


def _index(value, size: int, what: str) -> int:
    index = int(value)
    if not 0 <= index < size:
        raise _Corrupt(f"{what} {index} is out of range (0..{size - 1})")
    return index


def _text(raw) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else str(raw or "")


def _read_model(schema, data: bytes) -> TFLiteModel:
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    if not model.subgraphs:
        raise _Corrupt("no subgraph")
    subgraph = model.subgraphs[0]
    buffers = model.buffers or []
    codes = model.operatorCodes or []
    type_names = _enum_names(schema.TensorType)
    op_names = _enum_names(schema.BuiltinOperator)

    def buffer_size(index: int) -> int:
        if index <= 0 or index >= len(buffers):
            return 0
        buf = buffers[index]
        if buf.data is not None and len(buf.data):
            return len(buf.data)
        return int(buf.size or 0)  # weights stored after the flatbuffer (models over 2 GB)

    tensors = []
    for i, t in enumerate(subgraph.tensors or []):
        q = t.quantization
        quant = None
        if q is not None and q.scale is not None and len(q.scale):
            zp = q.zeroPoint if q.zeroPoint is not None else [0] * len(q.scale)
            quant = Quantization(tuple(float(s) for s in q.scale), tuple(int(z) for z in zp), int(q.quantizedDimension))
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
        tensors.append(
            Tensor(
                index=i,
                name=_text(t.name),
                shape=shape,
                shape_signature=sig,
                dtype=type_names.get(t.type, f"type{t.type}").lower(),
                quantization=quant,
                constant_bytes=buffer_size(t.buffer),
            )
        )

    def tensor_indices(values, what: str, *, optional: bool = False) -> tuple[int, ...]:
        # -1 marks an optional operator input that is absent
        return tuple(-1 if optional and int(x) == -1 else _index(x, len(tensors), what)
                     for x in (values if values is not None else ()))

    operators = []
    for i, op in enumerate(subgraph.operators or []):
        code = codes[_index(op.opcodeIndex, len(codes), f"operator {i}'s opcode index")]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)  # schema v3a keeps both fields
        name = op_names.get(builtin, f"BUILTIN_{builtin}")
        if name == "CUSTOM":
            name = "CUSTOM:" + (_text(code.customCode) or "?")
        operators.append(Operator(i, name, tensor_indices(op.inputs, f"operator {i}'s input", optional=True),
                                  tensor_indices(op.outputs, f"operator {i}'s output")))

    return TFLiteModel(
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        tensors=tuple(tensors),
        operators=tuple(operators),
        input_indices=tensor_indices(subgraph.inputs, "model input"),
        output_indices=tensor_indices(subgraph.outputs, "model output"),
        num_subgraphs=len(model.subgraphs),
        description=_text(model.description),
    )


def verify_loadable(source: str | Path | bytes) -> None:
    """Raise ModelFileError if the LiteRT interpreter rejects the file.

    Its flatbuffer verifier checks what this reader cannot (offsets, buffer bounds, op versions);
    a file that only lacks a custom op's kernel is valid, and passes.
    """
    from edgequant.model.runtime import load_interpreter

    try:
        load_interpreter(source, kernels="builtin")
    except ModelFileError as exc:
        if "uses custom op" not in str(exc):  # runtime.load_interpreter's words for a missing custom kernel
            raise


def check_tflite(source: str | Path | bytes) -> TFLiteModel:
    """The one check every command makes of a .tflite it is given; raises ModelFileError (exit 2) if corrupt.

    edgequant's own reader (every index), then the LiteRT interpreter: it must load the file, name its
    tensors in UTF-8, and run it once on generated inputs with the default (XNNPACK) kernels. So `inspect`,
    `bench`, `compare` and `devices` accept and refuse the same files, with the same words. A file that
    only lacks a custom op's kernel is valid, and passes (it cannot run here; `bench` says so).
    """
    info = read_tflite(source)
    label = "<bytes>" if isinstance(source, (bytes, bytearray)) else str(source)
    if not info.inputs or not info.outputs:
        raise ModelFileError(f"{label}: corrupt .tflite file (the model has no {'inputs' if not info.inputs else 'outputs'})")
    if info.custom_ops:
        verify_loadable(source)
        return info
    from edgequant.model.inputs import generate_inputs
    from edgequant.model.runtime import load_interpreter

    interpreter = load_interpreter(source)
    try:
        inputs, _ = interpreter.get_input_details(), interpreter.get_output_details()
        for detail, x in zip(inputs, generate_inputs(inputs)):
            interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    except UnicodeDecodeError:
        raise ModelFileError(f"{label}: corrupt .tflite file (tensor names that are not UTF-8 text)") from None
    except (ValueError, RuntimeError, IndexError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{label}: corrupt .tflite file (the LiteRT interpreter cannot run it: {first[:200]})"
                             ) from None
    return info
