"""Pack a float .tflite's weights to INT8/INT4/INT2 with Google's quantizer (`litert-quantizer`, the lowbit extra).

This is the only module that imports the quantizer. Every packed operator gets dynamic-range
quantization: its weights are stored as symmetric integers with one scale per output channel
(or per block of a dense layer's input), and LiteRT quantizes the float activations to int8
at run time (compute_precision INTEGER, no explicit DEQUANTIZE), which is what lets XNNPACK
run INT4 and INT2 fully connected layers with integer kernels.

What ai-edge-litert 2.3.0 does with these files, measured here (tests/test_lowbit.py):
- INT2 and INT4 FULLY_CONNECTED compute right, and XNNPACK takes them;
- INT2 CONV_2D computes WRONG results: refused (`Int2ConvolutionRefused`) until a runtime fixes it;
- INT4 CONV_2D is right but XNNPACK does not take it (builtin hybrid kernels);
- blockwise INT2 is refused when the interpreter loads the file: dense layers go per channel at 2 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgequant.errors import BuildError, InputError
from edgequant.extras import require

# DEPTHWISE_CONV_2D stays float: the quantizer 0.11 has no dynamic-range policy for it.
CONV_OPS = ("CONV_2D",)
DENSE_OPS = ("FULLY_CONNECTED",)
INT2_CONV_REASON = (
    "ai-edge-litert 2.3 computes CONV_2D with INT2 weights wrong (NaN or unrelated outputs; "
    "tests/test_lowbit.py::test_int2_convolution_is_still_computed_wrong shows it)"
)


@dataclass(frozen=True)
class PackPlan:
    """Weight bits per kind of layer; `dense_block_size`: blockwise scales for dense layers (INT4/INT8 only)."""

    dense_bits: int
    conv_bits: int
    dense_block_size: int | None = None

    def bits_for(self, op_type: str) -> int | None:
        if op_type in DENSE_OPS:
            return self.dense_bits
        if op_type in CONV_OPS:
            return self.conv_bits
        return None

    def describe(self) -> str:
        block = f", blocks of {self.dense_block_size}" if self.dense_block_size else ""
        return f"dense INT{self.dense_bits}{block}, convolutions INT{self.conv_bits}"


class Int2ConvolutionRefused(InputError):
    """INT2 convolution weights were asked for while the runtime computes them wrong."""


def require_quantizer(label: str):
    """Google's quantizer module, or a one-line ToolMissingError (exit 2) naming the extra to install."""
    return require("litert_quantizer.quantizer", "lowbit", f"{label}: ≤4-bit weights")


def pack(float_tflite: bytes, plan: PackPlan, *, label: str, allow_int2_convolutions: bool = False) -> bytes:
    """`float_tflite` with its dense and convolution weights packed as `plan` says.

    allow_int2_convolutions: only for the test that shows INT2 CONV_2D is still computed wrong.
    """
    if plan.conv_bits == 2 and not allow_int2_convolutions:
        raise Int2ConvolutionRefused(f"{label}: INT2 convolutions are refused: {INT2_CONV_REASON}; "
                                     "use conv_bits: 4 or 8")
    if plan.dense_block_size and plan.dense_bits == 2:
        raise InputError(f"{label}: blockwise INT2 is refused by ai-edge-litert 2.3 when it loads the file; "
                         "drop dense_block_size (INT2 dense layers use one scale per channel)")
    quantizer = require_quantizer(label)
    qtyping = require("litert_quantizer.qtyping", "lowbit", f"{label}: ≤4-bit weights")
    channel = qtyping.QuantGranularity.CHANNELWISE
    dense_granularity = (qtyping.QuantGranularity(f"BLOCKWISE_{plan.dense_block_size}")
                         if plan.dense_block_size else channel)
    try:
        q = quantizer.Quantizer(bytearray(float_tflite))
        for op in DENSE_OPS:
            q.add_dynamic_config(regex=".*", operation_name=op, num_bits=plan.dense_bits,
                                 granularity=dense_granularity)
        for op in CONV_OPS:
            q.add_dynamic_config(regex=".*", operation_name=op, num_bits=plan.conv_bits, granularity=channel)
        result = q.quantize(enable_progress_report=False)
    except Exception as exc:  # the quantizer raises ValueError, RuntimeError, KeyError... on what it cannot pack
        text = str(exc).strip().splitlines()
        raise BuildError(f"{label}: the quantizer could not pack the weights ({plan.describe()}): "
                         f"{text[-1] if text else type(exc).__name__}") from None
    return bytes(result.quantized_model)
