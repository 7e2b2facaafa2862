"""≤4-bit weights in standard .tflite files: modes `int4`, `ternary` and `binary` (the `lowbit` extra).

    pack.py      float .tflite -> INT8/INT4/INT2 weights, with Google's quantizer (its only importer)
    readback.py  the packed file read back: are the weights really INT2/INT4?
    weights.py   ternary / binary weight quantizers for QAT, on tfmot's API
    variant.py   a recipe variant: (train,) pack, read back

Importing this package imports neither TensorFlow, tfmot nor the quantizer.
"""

from edgequant.lowbit.variant import build_lowbit_variant, prepare_lowbit, quantized_float_model

__all__ = ["build_lowbit_variant", "prepare_lowbit", "quantized_float_model"]
