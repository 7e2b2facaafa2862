"""Read a packed .tflite back and check its weights really are the bits asked for.

Google's quantizer skips what it does not match without an error (weight-only INT2 over
"all supported ops" leaves every weight float, measured with litert-quantizer 0.11), so a
"ternary" file could silently be a float one. The file itself is the proof: every dense and
convolution operator's weight tensor must hold the planned integer type.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from edgequant.errors import BuildError
from edgequant.lowbit.pack import PackPlan
from edgequant.model.tflite_file import TFLiteModel, read_tflite

_BITS = {"int2": 2, "int4": 4, "int8": 8}


@dataclass(frozen=True)
class PackedWeights:
    """What the file holds: weight tensors per (operator type, integer type), and their bytes."""

    counts: dict[str, int]  # "FULLY_CONNECTED int2" -> operators
    weight_bytes: int

    def describe(self) -> str:
        return ", ".join(f"{n} {k}" for k, n in sorted(self.counts.items()))


def weight_types(model: TFLiteModel, plan: PackPlan) -> list[tuple[str, int, str]]:
    """(op type, operator index, weight dtype) of each operator the plan packs."""
    found = []
    for op in model.operators:
        if plan.bits_for(op.op_type) is None:
            continue
        index = op.inputs[1] if len(op.inputs) > 1 else -1  # (input, weights, bias) for every packed op
        if index < 0 or not model.tensors[index].is_constant:
            continue  # a matmul of two activations has no weights to pack
        found.append((op.op_type, op.index, model.tensors[index].dtype))
    return found


def check_packed(data: bytes, plan: PackPlan, *, label: str) -> PackedWeights:
    """Raise BuildError unless every packable weight in `data` has the planned bit width."""
    model = read_tflite(data)
    found = weight_types(model, plan)
    if not found:
        raise BuildError(f"{label}: the packed model has no dense or convolution weights: nothing was packed")
    wrong = [(op, i, dtype) for op, i, dtype in found if _BITS.get(dtype) != plan.bits_for(op)]
    if wrong:
        op, i, dtype = wrong[0]
        raise BuildError(f"{label}: read back, {len(wrong)} of {len(found)} weight tensors are not what was packed "
                         f"(e.g. {op}#{i} holds {dtype}, expected int{plan.bits_for(op)}): the quantizer silently "
                         "left them; the file is not written")
    counts = Counter(f"{op} {dtype}" for op, _, dtype in found)
    return PackedWeights(dict(counts), model.weight_bytes)
