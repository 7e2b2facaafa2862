"""The LiteRT interpreter, loaded one way for every stage (evaluation, benchmarks, parity).

`ai_edge_litert` is the runtime; `tflite_runtime` is the fallback on images where
only that is installed (an old Raspberry Pi OS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from edgequant.errors import ModelFileError

Kernels = Literal["xnnpack", "builtin", "reference"]
KERNEL_CHOICES: tuple[str, ...] = ("xnnpack", "builtin", "reference")


def _interpreter_module():
    try:
        from ai_edge_litert import interpreter
    except ImportError:  # pragma: no cover - only on images without ai-edge-litert
        from tflite_runtime import interpreter
    return interpreter


def load_interpreter(model: str | Path | bytes, *, kernels: Kernels = "xnnpack", threads: int = 1):
    """An allocated interpreter for `model` (a path or the file's bytes).

    kernels: "xnnpack" (the default delegate), "builtin" (optimized builtin kernels
    without the default delegate) or "reference" (the reference kernels).
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
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{label}: the LiteRT interpreter cannot load this model: {first}") from None
    return interp


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
