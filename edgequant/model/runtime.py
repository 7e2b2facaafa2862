"""The LiteRT interpreter, loaded one way for every stage (evaluation, benchmarks, parity).

`ai_edge_litert` is the runtime; `tflite_runtime` is the fallback on images where
only that is installed (an old Raspberry Pi OS).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping, Sequence

import numpy as np

from edgequant.errors import DataError, ModelFileError

Kernels = Literal["xnnpack", "builtin", "reference"]
KERNEL_CHOICES: tuple[str, ...] = ("xnnpack", "builtin", "reference")


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError:  # pragma: no cover - only on images without ai-edge-litert
        from tflite_runtime import interpreter
    return interpreter


def load_interpreter(model: str | Path | bytes, *, kernels: Kernels = "xnnpack", threads: int = 1,
                     allocate: bool = True):
    """An allocated interpreter for `model` (a path or the file's bytes).

    kernels: "xnnpack" (the default delegate), "builtin" (optimized builtin kernels
    without the default delegate) or "reference" (the reference kernels).
    allocate=False: the caller resizes the inputs first (a dynamic axis whose placeholder size in the file,
    often 1, the model cannot run at) and calls `allocate(interp)`.
    """
    mod = _interpreter_module()
    resolver = {
        "xnnpack": mod.OpResolverType.AUTO,
        "builtin": mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "reference": mod.OpResolverType.BUILTIN_REF,
    }[kernels]
    source = {"model_content": bytes(model)} if isinstance(model, (bytes, bytearray)) else {"model_path": str(model)}
    label = "<bytes>" if "model_content" in source else str(model)
    if "model_path" in source and not Path(label).is_file():
        raise ModelFileError(f"{label}: no such .tflite file")
    try:
        interp = mod.Interpreter(num_threads=threads, experimental_op_resolver_type=resolver, **source)
        if allocate:
            interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{label}: {_load_error_text(str(exc), type(exc).__name__)}") from None
    return interp


def allocate(interp, shapes: Sequence[Sequence[int]] | None = None) -> None:
    """Allocate `interp`'s tensors; a failure at these input shapes (the model cannot run them) is a DataError."""
    try:
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        at = f" at input shape {', '.join(str(list(s)) for s in shapes)}" if shapes else ""
        raise DataError(f"the model cannot run{at}: {first}") from None


def _load_error_text(message: str, fallback: str) -> str:
    custom = re.search(r"unresolved custom op: ([^.\s]+)", message)
    if custom:
        return (f"uses custom op '{custom.group(1)}', which the LiteRT interpreter does not provide "
                "(convert without allow_custom_ops, or register the op in your own runtime)")
    if "not a valid Flatbuffer" in message:
        return "not a valid .tflite file (the LiteRT interpreter rejects the flatbuffer: truncated or not a model)"
    first = message.strip().splitlines()[0] if message.strip() else fallback
    return f"the LiteRT interpreter cannot load this model: {first}"


def runtime_version() -> str:
    """Which runtime package and version `load_interpreter` uses, e.g. 'ai-edge-litert 2.3.0'."""
    from importlib import metadata

    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown runtime"


def set_inputs(interp, arrays: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> None:
    """Write one array per model input (in input order, or keyed by input name), checking shape and dtype.

    Float arrays given for a quantized input are quantized with the input's scale and zero point.
    """
    details = interp.get_input_details()
    if isinstance(arrays, Mapping):
        missing = [d["name"] for d in details if d["name"] not in arrays]
        if missing:
            raise DataError(f"no data for model input(s) {', '.join(missing)}; inputs are "
                            f"{', '.join(d['name'] for d in details)}")
        arrays = [arrays[d["name"]] for d in details]
    if len(arrays) != len(details):
        raise DataError(f"the model has {len(details)} input(s), got data for {len(arrays)}")
    for detail, array in zip(details, arrays):
        array = np.asarray(array)
        expected = tuple(int(d) for d in detail["shape"])
        if tuple(array.shape) != expected:
            raise DataError(f"input '{detail['name']}': shape {list(array.shape)}, the model expects {list(expected)}")
        interp.set_tensor(detail["index"], _as_input_dtype(array, detail))


def _as_input_dtype(array: np.ndarray, detail: dict) -> np.ndarray:
    """Data in the input's dtype: real values are quantized for a quantized input, plain integers
    are cast only when every value fits."""
    dtype = np.dtype(detail["dtype"])
    if array.dtype == dtype:
        return array
    numeric = array.dtype.kind in "fiu"
    if numeric and dtype.kind in "iu" and detail["quantization"][0] != 0:
        return quantize_input(array.astype(np.float32), detail)
    if numeric and dtype.kind == "f":
        return array.astype(dtype)
    if array.dtype.kind in "iu" and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.size == 0 or (array.min() >= info.min and array.max() <= info.max):
            return array.astype(dtype)
    raise DataError(f"input '{detail['name']}': data of dtype {array.dtype} does not fit the model's {dtype}")


@dataclass(frozen=True)
class ExecutionPlan:
    """How the interpreter will run a model: which of its operators a delegate (XNNPACK) took over.

    Read from the interpreter's nodes after delegation: each DELEGATE node replaced a connected
    partition of the original operators, found by walking back from the partition's outputs to its
    inputs. Operators outside every partition run on the interpreter's own (builtin) kernels.
    """

    op_types: tuple[str, ...]  # the model's operators, in file order
    partitions: tuple[tuple[int, ...], ...]  # operator indices each delegate node took over
    tensors: int = 0  # tensors after allocation: the model's plus the kernels' temporaries (im2col...)

    @property
    def delegated(self) -> frozenset[int]:
        return frozenset(i for part in self.partitions for i in part)

    @property
    def fallback(self) -> tuple[int, ...]:
        """Operators that run on builtin kernels, in file order."""
        taken = self.delegated
        return tuple(i for i in range(len(self.op_types)) if i not in taken)

    def to_dict(self) -> dict:
        return {
            "operators": len(self.op_types),
            "delegated": len(self.delegated),
            "partitions": len(self.partitions),
            "tensors": self.tensors,
            "fallback": [{"index": i, "op": self.op_types[i]} for i in self.fallback],
        }


def execution_plan(interp) -> ExecutionPlan:
    """The delegation an allocated interpreter ended up with.

    The Python API has no public call for the execution plan; `_get_ops_details` (used here) lists
    every node, including the DELEGATE nodes that replace partitions.
    """
    nodes = interp._get_ops_details()
    originals = [n for n in nodes if n["op_name"] != "DELEGATE"]
    producer = {int(t): n["index"] for n in originals for t in n["outputs"]}
    partitions = []
    for node in nodes:
        if node["op_name"] != "DELEGATE":
            continue
        boundary = {int(t) for t in node["inputs"]}
        inside: set[int] = set()
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in inside:
                continue
            op = producer[tensor]
            inside.add(op)
            stack.extend(int(t) for t in originals[op]["inputs"] if t >= 0)
        partitions.append(tuple(sorted(inside)))
    return ExecutionPlan(op_types=tuple(n["op_name"] for n in originals), partitions=tuple(partitions),
                         tensors=len(interp.get_tensor_details()))


def natural_key(name: str) -> list:
    """Sort key that orders 'output_2' before 'output_10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def named_inputs(interp) -> list[tuple[str, dict]]:
    """(name, detail) of every input, in the interpreter's input order; names from the model's one signature
    (what a SavedModel export calls them), else the tensors' own names."""
    return _named(interp, "input", interp.get_input_details())


def named_outputs(interp) -> list[tuple[str, dict]]:
    """(name, detail) of every output, ordered by name (naturally: output_2 before output_10), so that every
    variant of a model lists its outputs alike whatever order the converter gave them."""
    return sorted(_named(interp, "output", interp.get_output_details()), key=lambda item: natural_key(item[0]))


def in_input_order(interp, sample) -> list[np.ndarray]:
    """A sample as one array per input in the interpreter's input order: an array (one input), a dict by input
    name (signature name or tensor name), or a list already in order."""
    if isinstance(sample, Mapping):
        named = named_inputs(interp)
        missing = [name for name, detail in named if name not in sample and detail["name"] not in sample]
        if missing:
            raise DataError(f"no data for model input(s) {', '.join(missing)}; the data gives {', '.join(sample)}")
        return [np.asarray(sample[name] if name in sample else sample[d["name"]]) for name, d in named]
    if isinstance(sample, np.ndarray):
        return [sample]
    return [np.asarray(a) for a in sample]


def _named(interp, side: str, details: list[dict]) -> list[tuple[str, dict]]:
    signatures = interp.get_signature_list()
    if len(signatures) == 1:
        key = next(iter(signatures))
        named = signatures[key].get(f"{side}s", [])
        if len(named) == len(details):
            runner = interp.get_signature_runner(key)
            by_index = {int(d["index"]): name for name, d in
                        (runner.get_input_details() if side == "input" else runner.get_output_details()).items()}
            if all(int(d["index"]) in by_index for d in details):
                return [(by_index[int(d["index"])], d) for d in details]
    return [(d["name"], d) for d in details]


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float data into the dtype an input tensor expects, with its scale and zero point."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail["quantization"]
    if scale == 0:
        return x.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize_output(y: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor as float32, undoing its quantization if it has one."""
    scale, zero_point = detail["quantization"]
    if np.dtype(detail["dtype"]).kind == "f" or scale == 0:
        return y.astype(np.float32, copy=False)
    return (y.astype(np.float32) - zero_point) * np.float32(scale)
