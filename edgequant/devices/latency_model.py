"""Counted ARM instructions -> estimated latency on a device: the cost model and its parameters.

One invoke of a model on n threads of a device is estimated as

    compute(1) = (cpi_float * I_float_and_other + cpi_int8 * I_int8) / clock
    compute(n) = compute(1) * (1 + contention * (n - 1)) / n
    memory     = (weight bytes + activation bytes) / effective bandwidth
    latency(n) = compute(n) + memory

I_* are the instructions one invoke executes on the emulated core, split by the
kernels they ran in (XNNPACK's float or int8 kernels; everything else is
costed like float code). The memory term is the traffic the cores cannot hide
behind arithmetic: small, memory-bound layers (MobileNetV3's squeeze-excite and
hard-swish) make it visible; it does not shrink with threads. `contention`
(Universal Scalability Law's serial share) is how much each extra thread loses
to shared caches and DRAM.

The parameters (cost: in a profile) are a handful per core type, fitted on
published measurements by benchmarks/fit_device_profiles.py. The estimate is a
pure function of the counts and the profile: the same model and profile give
the same figure on every run and machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KERNEL_CLASSES = ("float", "int8", "other")

# XNNPACK names its kernels by data type (xnn_f32_..., xnn_qs8_...); TFLite's builtin
# kernels (ruy, optimized_ops) say it in their (mangled C++) names.
_FLOAT = re.compile(r"^xnn_(f32|f16|bf16)_|Float|float")
_INT8 = re.compile(r"^xnn_(qs8|qu8|qd8|qc8|qs16|s8|u8|x8)_|8bit|[Ii]nt8|[Uu]int8|[Qq]uantized")


def kernel_class(symbol: str) -> str:
    """Which cost class a function's instructions fall in: float kernels, int8 kernels, or other code."""
    if _FLOAT.search(symbol):
        return "float"
    if _INT8.search(symbol):
        return "int8"
    return "other"


def instructions_by_class(by_symbol: dict[str, int]) -> dict[str, int]:
    totals = dict.fromkeys(KERNEL_CLASSES, 0)
    for symbol, n in by_symbol.items():
        totals[kernel_class(symbol)] += n
    return totals


@dataclass(frozen=True)
class Workload:
    """What one invoke of a model asks of one core type."""

    instructions: int  # per invoke, one thread, counted on the emulated core
    by_class: dict[str, int]  # the same instructions split by KERNEL_CLASSES
    weight_bytes: int
    activation_bytes: int

    @property
    def int8_instructions(self) -> int:
        if sum(self.by_class.values()) == 0:
            return 0
        # the classes cover the attributed instructions; scale to the exact total
        return round(self.instructions * self.by_class.get("int8", 0) / sum(self.by_class.values()))


@dataclass(frozen=True)
class CostParams:
    cpi_float: float  # core cycles per instruction of float kernels and other code
    cpi_int8: float  # core cycles per instruction of int8 kernels
    bandwidth_gbs: float  # effective bandwidth of the memory term
    contention: float  # USL serial share per extra thread, 0 = perfect scaling


def estimate_ms(workload: Workload, params: CostParams, *, clock_ghz: float, threads: int, cores: int,
                multi_thread_clock_ghz: float | None = None) -> float:
    """Estimated milliseconds per invoke (unrounded)."""
    n = max(1, min(threads, cores))
    clock = clock_ghz if n == 1 else (multi_thread_clock_ghz or clock_ghz)
    i_int8 = workload.int8_instructions
    cycles = params.cpi_float * (workload.instructions - i_int8) + params.cpi_int8 * i_int8
    compute_ms = cycles / (clock * 1e6) * (1 + params.contention * (n - 1)) / n
    memory_ms = (workload.weight_bytes + workload.activation_bytes) / (params.bandwidth_gbs * 1e6)
    return compute_ms + memory_ms


def profile_params(profile) -> CostParams:
    c = profile.cost
    return CostParams(c.cpi_float, c.cpi_int8, c.effective_bandwidth_gbs, c.contention)


def estimate_profile_ms(workload: Workload, profile, threads: int) -> float:
    """Estimated milliseconds per invoke on a device profile, rounded to 0.01 ms."""
    ms = estimate_ms(workload, profile_params(profile), clock_ghz=profile.clock_ghz, threads=threads,
                     cores=profile.cores, multi_thread_clock_ghz=profile.multi_thread_clock_ghz)
    return round(ms, 2)
