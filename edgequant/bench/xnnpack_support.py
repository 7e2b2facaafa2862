"""Which operators XNNPACK takes in ai-edge-litert 2.3, per op and tensor type, as data.

Tensor types ("classes") of an operator instance:
  fp32     float32 activations and weights
  fp16w    float32 activations, weights stored as float16 (a DEQUANTIZE of an fp16 constant feeds
           the op); XNNPACK dequantizes them once, at load, and runs fp32 kernels
  dynamic  float32 activations with int8 constant weights (dynamic-range quantization); XNNPACK
           quantizes activations on the fly (its qd8 kernels)
  dynamic4 / dynamic2  the same with INT4 / INT2 weights (modes int4, ternary, binary: edgequant.lowbit);
           observed with ai-edge-litert 2.3: XNNPACK takes FULLY_CONNECTED (qd8 x qc4w / qc2w kernels), not
           CONV_2D, which runs on the builtin hybrid kernels (tests/test_lowbit.py checks the execution plan)
  qs8      int8 activations (full-integer quantization)
  qu8      uint8 activations (legacy uint8 quantization, e.g. old TF1 quantized models)
  int16x8  int16 activations with int8 weights: XNNPACK delegates none of it
  other    bool/int32/int64 data ops (indices, masks): not delegated

How this table was made and verified: every entry was observed, not copied from documentation.
`benchmarks/host_figures.py probe-xnnpack` converts a one-op model per op (TFLiteConverter, into
fp32, fp16-weight, dynamic-range, int8 and int16x8 variants, and a TF1 fake-quant graph into uint8)
and reads the interpreter's execution plan after delegation (`edgequant.model.runtime.execution_plan`):
an operator inside a DELEGATE node's partition was taken by XNNPACK. It prints any disagreement
with this table. qu8 was probed for CONV_2D, DEPTHWISE_CONV_2D, ADD, MAX_POOL_2D, AVERAGE_POOL_2D,
CONCATENATION, MEAN, FULLY_CONNECTED, MUL, SOFTMAX, QUANTIZE, LOGISTIC and RESHAPE; other qu8
entries follow qs8 and are marked unverified. At run time `explain_speed` also checks every
prediction against the model's real execution plan, so a wrong entry shows up as a disagreement.
"""

from __future__ import annotations

from types import MappingProxyType

FP32, FP16W, DYNAMIC, QS8, QU8, INT16X8, OTHER = "fp32", "fp16w", "dynamic", "qs8", "qu8", "int16x8", "other"
DYNAMIC4, DYNAMIC2 = "dynamic4", "dynamic2"
TENSOR_CLASSES = (FP32, FP16W, DYNAMIC, DYNAMIC4, DYNAMIC2, QS8, QU8, INT16X8, OTHER)
_DYNAMIC_BY_WEIGHT = {"int8": DYNAMIC, "int4": DYNAMIC4, "int2": DYNAMIC2}

_F = frozenset
_FLOAT = _F({FP32, FP16W})
_FLOAT_Q8 = _F({FP32, FP16W, QS8, QU8})

# op -> tensor classes XNNPACK takes (ai-edge-litert 2.3.0, x86_64 and aarch64 wheels alike).
SUPPORTED: MappingProxyType = MappingProxyType({
    "ABS": _FLOAT,
    "ADD": _FLOAT_Q8,
    "AVERAGE_POOL_2D": _FLOAT,  # int8/uint8 average pooling falls back
    "BATCH_MATMUL": _FLOAT | {DYNAMIC},  # int8 x int8 batch matmul falls back
    "CEIL": _FLOAT,
    "CONCATENATION": _FLOAT_Q8,
    "CONV_2D": _FLOAT_Q8 | {DYNAMIC},  # NOT dynamic4/dynamic2: INT4 conv runs on builtin kernels
    "COS": _FLOAT,
    "DEPTH_TO_SPACE": _FLOAT_Q8,
    "DEPTHWISE_CONV_2D": _FLOAT_Q8,  # NOT dynamic: hybrid depthwise (int8 weights, fp32 activations) falls back
    "DEQUANTIZE": _F({FP16W, QS8, QU8}),  # fp16 constants only when the consumer is delegated too
    "DIV": _FLOAT,
    "ELU": _FLOAT,
    "EXP": _FLOAT,
    "FLOOR": _FLOAT,
    "FULLY_CONNECTED": _FLOAT_Q8 | {DYNAMIC, DYNAMIC4, DYNAMIC2},  # blockwise INT4 too
    "GELU": _FLOAT,
    "HARD_SWISH": _FLOAT,  # int8 hard-swish falls back (matters for int8 MobileNetV3)
    "LEAKY_RELU": _FLOAT_Q8,
    "LOG": _FLOAT,
    "LOGISTIC": _FLOAT_Q8,
    "MAX_POOL_2D": _FLOAT_Q8,
    "MAXIMUM": _FLOAT,
    "MEAN": _FLOAT_Q8,
    "MINIMUM": _FLOAT,
    "MUL": _FLOAT_Q8,
    "NEG": _FLOAT,
    "PAD": _FLOAT_Q8,
    "QUANTIZE": _F({QS8, QU8}),  # float->int8/uint8 and requantization; not float->int16
    "REDUCE_MAX": _FLOAT_Q8,
    "REDUCE_MIN": _FLOAT_Q8,
    "RELU": _FLOAT,  # a standalone int8 RELU falls back; after a conv it is fused anyway
    "RELU6": _FLOAT,
    "RELU_N1_TO_1": _FLOAT,
    "RESHAPE": _FLOAT_Q8,
    "RESIZE_BILINEAR": _FLOAT_Q8,
    "ROUND": _FLOAT,
    "RSQRT": _FLOAT,
    "SIN": _FLOAT,
    "SLICE": _FLOAT_Q8,
    "SOFTMAX": _FLOAT,  # int8 softmax falls back: an int8 classifier's last op runs on builtin kernels
    "SPACE_TO_DEPTH": _FLOAT_Q8,
    "SPLIT": _FLOAT_Q8,
    "SQRT": _FLOAT,
    "SQUARE": _FLOAT,
    "SQUARED_DIFFERENCE": _FLOAT,
    "STRIDED_SLICE": _FLOAT_Q8,  # only with all strides 1
    "SUB": _FLOAT_Q8,
    "SUM": _FLOAT_Q8,
    "TANH": _FLOAT_Q8,
    "TRANSPOSE": _FLOAT_Q8,
    "TRANSPOSE_CONV": _FLOAT_Q8 | {DYNAMIC},
})

# Observed falling back in every tensor class probed (listed so a reader sees they were tried).
NOT_SUPPORTED = frozenset({
    "ARG_MAX", "BROADCAST_TO", "CAST", "CUMSUM", "GATHER", "GREATER", "L2_NORMALIZATION", "LOG_SOFTMAX",
    "PACK", "REDUCE_PROD", "RESIZE_NEAREST_NEIGHBOR", "SELECT", "SIGN",
})

QU8_PROBED = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "CONCATENATION", "MEAN",
    "FULLY_CONNECTED", "MUL", "SOFTMAX", "QUANTIZE", "LOGISTIC", "RESHAPE",
})

CONDITIONS = MappingProxyType({
    "STRIDED_SLICE": "only when every stride is 1",
    "DEQUANTIZE": "an fp16-constant DEQUANTIZE only when the op it feeds is delegated",
})


def xnnpack_takes(op_type: str, tensor_class: str) -> bool:
    """Whether XNNPACK delegates `op_type` for operands of `tensor_class` (see the module doc)."""
    return tensor_class in SUPPORTED.get(op_type, frozenset())


def is_verified(op_type: str, tensor_class: str) -> bool:
    """False for the qu8 entries inferred from qs8 rather than probed."""
    return not (tensor_class == QU8 and op_type not in QU8_PROBED)


def classify_operators(model) -> list[str]:
    """The tensor class of each operator of a `TFLiteModel` (from `edgequant.model.tflite_file.read_tflite`)."""
    producer = {t: op for op in model.operators for t in op.outputs}

    def from_fp16_constant(index: int) -> bool:
        op = producer.get(index)
        return (op is not None and op.op_type == "DEQUANTIZE"
                and any(model.tensors[i].is_constant and model.tensors[i].dtype == "float16" for i in op.inputs if i >= 0))

    classes = []
    for op in model.operators:
        inputs = [model.tensors[i] for i in op.inputs if i >= 0]
        outputs = [model.tensors[i] for i in op.outputs if i >= 0]
        if op.op_type == "QUANTIZE":
            dtype = outputs[0].dtype if outputs else ""
        elif op.op_type == "DEQUANTIZE" and inputs and inputs[0].dtype == "float16":
            classes.append(FP16W)
            continue
        else:
            activations = [t for t in inputs if not t.is_constant] or inputs
            dtype = activations[0].dtype if activations else (outputs[0].dtype if outputs else "")
        if dtype == "float32":
            weights = [_DYNAMIC_BY_WEIGHT[t.dtype] for t in inputs if t.is_constant and t.dtype in _DYNAMIC_BY_WEIGHT]
            if weights:
                classes.append(weights[0])
            elif any(from_fp16_constant(t.index) for t in inputs):
                classes.append(FP16W)
            else:
                classes.append(FP32)
        else:
            classes.append({"int8": QS8, "uint8": QU8, "int16": INT16X8}.get(dtype, OTHER))
    return classes


def model_precision(classes: list[str]) -> str:
    """float32, float16, dynamic, int8, uint8, int16x8, or dynamic-int4 / dynamic-int2 (the lowest weight
    bits of a dynamic-range model with ≤4-bit weights): what a model's operator classes add up to."""
    counts = {c: classes.count(c) for c in TENSOR_CLASSES}
    if counts[INT16X8]:
        return "int16x8"
    if counts[QS8] or counts[QU8]:
        return "int8" if counts[QS8] >= counts[QU8] else "uint8"
    if counts[DYNAMIC2]:
        return "dynamic-int2"
    if counts[DYNAMIC4]:
        return "dynamic-int4"
    if counts[DYNAMIC]:
        return "dynamic"
    if counts[FP16W]:
        return "float16"
    return "float32"
