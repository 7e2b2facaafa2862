"""How much memory an int8 fix may use for its working arrays, and the layers it skipped for lack of it.

Each fix estimates, before allocating anything, what a layer will need (adaptive rounding's input
second moment grows with the square of the layer's inputs: 28.6 GiB for a Dense layer reading 61,952
values), and leaves a layer it cannot afford as the converter rounds it, saying so in the report's
int8-fixes section. The budget is per fix and covers what the fix holds at once, not the model itself
or the interpreter's arena.

Default: MEMORY_BUDGET_BYTES; the environment variable EDGEQUANT_INT8_FIX_MEMORY_MIB sets another.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

MEMORY_BUDGET_BYTES = 1 << 30  # 1 GiB per fix: well inside a laptop's memory, and enough for MobileNet-sized layers
ENV_VAR = "EDGEQUANT_INT8_FIX_MEMORY_MIB"


def memory_budget() -> int:
    """The budget in bytes: EDGEQUANT_INT8_FIX_MEMORY_MIB if set (a positive number of MiB), else the default."""
    text = os.environ.get(ENV_VAR)
    if not text:
        return MEMORY_BUDGET_BYTES
    from edgequant.errors import InputError

    try:
        mib = float(text)
    except ValueError:
        mib = -1.0
    if not mib > 0:
        raise InputError(f"{ENV_VAR}={text!r}: expected a positive number of MiB, e.g. 4096")
    return int(mib * (1 << 20))


@dataclass(frozen=True)
class SkippedLayer:
    """A layer a fix left alone, and why (memory it could not afford, or too little data)."""

    fix: str
    layer: str
    reason: str

    def to_dict(self) -> dict:
        return {"fix": self.fix, "layer": self.layer, "reason": self.reason}


def size_text(n: float) -> str:
    """Bytes as MiB or GiB, e.g. '28.6 GiB'."""
    return f"{n / (1 << 30):,.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):,.1f} MiB"


def too_big(fix: str, layer: str, needs: float, budget: int) -> SkippedLayer | None:
    """A SkippedLayer if `needs` bytes exceed `budget`, else None."""
    if needs <= budget:
        return None
    return SkippedLayer(fix, layer, f"needs {size_text(needs)} of working memory, over the {size_text(budget)} "
                                   f"budget ({ENV_VAR} raises it)")
