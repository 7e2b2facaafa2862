"""Counted ARM instructions -> estimated latency on a device: the cost model.

One invoke of a model on a device is estimated as

    cycles(core) = Σ_class  price[class] * I[class] / per_cycle[core][class]   (+ issue: all I / decode width)
                   * in_order_factor (in-order cores) * builtin_factor (TFLite's builtin kernels)
    compute(1)   = cycles(big core) / clock   (* delegate_factor for XNNPACK through the TFLite interpreter)
    compute(n)   = compute(1) * (serial + (1 - serial) / speed(n))                                  (Amdahl)
                   speed(n) = Σ_{first n cores} relative speed / (1 + contention (n - 1))
                   + streamed                    (with `streaming`; the same at every thread count)
    streamed     = streaming bytes / (DRAM bandwidth * memory_efficiency * stream_factor)
                   streaming bytes = activation bytes read and written by nodes with too little arithmetic per
                   byte to hide them (no weights: elementwise, resize, concatenation, pooling...; and depthwise
                   convolutions with `streaming_depthwise`), read from the .tflite file, of the nodes whose
                   tensors exceed `on_chip_kb` (smaller ones stay in cache between the node writing them and the
                   node reading them)
    memory       = DRAM bytes / (DRAM bandwidth * memory_efficiency) - streamed
                   DRAM bytes = weight bytes + 2 * activation bytes (each tensor written and read once)
    latency(n)   = (compute(n)^p + memory^p)^(1/p)       (p = 1: added; large p: the slower one sets the pace)

I[class] are the instructions of one invoke by class (dot product, FP and
integer multiply-accumulate, other SIMD, loads, stores, scalar), counted on the
emulated core with the kernels the runtime picks for that core. `serial` is the
share of them in nodes that run on one thread whatever the thread count (builtin
nodes other than convolutions and matrix products, such as a detector's
post-processing, and the interpreter itself: layers.serial_instructions); it is
counted, not fitted.
per_cycle[core] are the core's published throughputs (core_timings.py): an SDOT
does four times the work of an FMLA per lane, and the counts already show that
(about 3x fewer instructions for int8 on a dot-product core); its price says how
many cycles it takes. `price` (one per class), `in_order_factor`,
`builtin_factor`, `delegate_factor`, `memory_efficiency` and `contention` are few and shared by every
device (CostParams, fitted by benchmarks/fit_device_profiles.py on the
calibration rows of every device and stored in cost_params.json). A device
differs only by its facts: core types, clocks, cores, DRAM bandwidth.

With n threads, threads fill the fastest cores first (the benchmark's "big
cores" affinity); a slower cluster adds its relative speed (its clock and its
own timings on the same instructions). The memory term is the traffic cores
cannot hide behind arithmetic; it does not shrink with threads, which is why
fp32 (4x the bytes) scales worse than int8 on a narrow memory system. The
streaming nodes' part of it is added to compute rather than hidden in the
roofline: those nodes are bound by bandwidth on every core here, and more
threads do not add bandwidth. This is what makes a detector with large
low-arithmetic tensors (EfficientDet's BiFPN and class head) slower per counted
instruction than a MobileNet, and scale worse with threads. Only nodes whose
tensors overflow the on-chip caches pay it: a MobileNet at 224x224 keeps most of
its streaming nodes on chip, a detector at 320 to 640 pixels few. `on_chip_kb` is
one shared figure, not each device's cache: the Linux device trees give 0.5 to
2.5 MiB for the Raspberry Pi boards (bcm2837/bcm2711 L2, bcm2712 L2 + L3) and
none for the phones' SoCs. A per-device figure needs the phones' caches, which
no reachable source gives (validated with figures from vendor descriptions: a
higher median |error|, a few more rows within ±25%; not shipped).

The estimate is a pure function of the counts, the profile and the parameters:
the same model, profile and kernels give the same figure on every run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from edgequant.devices.core_timings import timings

PARAMS_FILE = Path(__file__).with_name("cost_params.json")
KERNEL_FAMILIES = ("xnnpack", "builtin")


@dataclass(frozen=True)
class Workload:
    """What one invoke of a model asks of one core type, with one kernel family."""

    instructions: int  # per invoke, one thread, counted on the emulated core
    mix: dict[str, int]  # the same instructions by INSTRUCTION_CLASSES
    weight_bytes: int
    activation_bytes: int
    kernels: str = "xnnpack"
    serial_instructions: int = 0  # of `instructions`, those that run on one thread whatever the thread count
    nodes: int = 0  # operators of the model's execution plan, each dispatched (and with threads, synchronised) once
    # The nodes with next to no arithmetic per byte to hide their traffic behind (streaming_nodes): each one's kind
    # ("stream": no weights, such as elementwise, resize, concatenation, pooling; "depthwise": a depthwise
    # convolution) and the activation bytes it reads and writes.
    streaming_nodes: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class CostParams:
    """The few parameters shared by every device, fitted on the calibration rows."""

    price: dict[str, float]  # multiplies each PRICED class's published cycles (1 = as published)
    in_order_factor: float  # stalls of in-order cores beyond their issue limits
    builtin_factor: float  # TFLite's builtin kernels against XNNPACK's, same instruction mix
    memory_efficiency: float  # share of the device's DRAM bandwidth the memory term sees
    contention: float  # per extra thread, share of compute lost to shared caches and synchronisation
    # XNNPACK run by the TFLite interpreter's delegate (what LiteRT users run, and benchmark_model measures) against
    # the same kernels run by XNNPACK's own end2end_bench (which measured most calibration rows)
    delegate_factor: float = 1.0
    # How compute and DRAM traffic combine: (compute^p + memory^p)^(1/p). p = 1 adds them (the cores wait for
    # every byte), a large p takes the slower of the two (a roofline: traffic hidden behind arithmetic).
    roofline_p: float = 3.0
    # Per node of the execution plan: the runtime's dispatch, in thousands of big-core cycles, and with n threads
    # the thread pool's hand-off and barrier, per extra thread. Neither shrinks with threads.
    node_kcycles: float = 0.0
    node_sync_kcycles: float = 0.0
    # Streaming nodes' bytes (Workload.streaming_nodes: those without weights, and depthwise convolutions with
    # streaming_depthwise) priced at DRAM bandwidth and added to compute: bandwidth does not grow with threads, and
    # these nodes have too little arithmetic to hide their traffic behind.
    streaming: bool = False
    streaming_depthwise: bool = False
    # A streaming node whose tensors fit in this many KiB stays on chip: its producer left them in cache, so it
    # does not wait for DRAM (0: every streaming node reaches DRAM).
    on_chip_kb: float = 0.0
    # the streaming nodes' share of DRAM bandwidth relative to memory_efficiency (sequential reads and writes)
    stream_factor: float = 1.0
    # each thread streams the weights of its share of a layer's output on its own: weight traffic x threads
    weights_per_thread: bool = False
    intervals: dict[str, dict] = field(default_factory=dict)  # group -> leave-one-device-out error quantiles
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=4)
def _load_params(path: Path, mtime_ns: int) -> CostParams:
    return CostParams(**json.loads(path.read_text()))


def shipped_params() -> CostParams:
    return _load_params(PARAMS_FILE, PARAMS_FILE.stat().st_mtime_ns)


def precision_of(mix: dict[str, int]) -> str:
    """"int8" when integer arithmetic (dot product, integer multiply-accumulate) outweighs float."""
    return "int8" if mix.get("dot", 0) + mix.get("int_mac", 0) > mix.get("fp_mac", 0) else "fp32"


# Which pipes each priced class occupies: classes on the same pipes add up; different pipes overlap.
PIPES = {"simd": ("dot", "fp_mac", "int_mac", "simd_other"), "load_store": ("load", "store"), "scalar": ("scalar",),
         "issue": ("issue",)}
# How much an out-of-order core overlaps its pipes: cycles = (Σ pipe^p)^(1/p), between their sum (p = 1,
# in order: little overlap) and the busiest pipe (p -> inf).
OVERLAP_P = {False: 3.0, True: 2.0}


def core_cycles(mix: dict[str, int], core: str, kernels: str, params: CostParams) -> float:
    """Cycles one invoke takes on one core of type `core`."""
    t = timings(core)
    ideal = t.ideal_cycles(mix)
    pipes = [sum(params.price[c] * ideal[c] for c in classes) for classes in PIPES.values()]
    p = OVERLAP_P[t.in_order]
    cycles = sum(x ** p for x in pipes) ** (1 / p)
    if t.in_order:
        cycles *= params.in_order_factor
    if kernels == "builtin":
        cycles *= params.builtin_factor
    return cycles


def thread_speed(workload: Workload, profile, params: CostParams, threads: int) -> float:
    """How many big cores' worth of compute `threads` threads deliver on the device."""
    big_cycles = core_cycles(workload.mix, profile.core, workload.kernels, params)
    speeds = []
    for cluster in profile.clusters():
        if cluster.core == profile.core:
            relative = cluster.clock_ghz / profile.clock_ghz
        else:
            cycles = core_cycles(workload.mix, cluster.core, workload.kernels, params)
            relative = cluster.clock_ghz / profile.clock_ghz * big_cycles / cycles
        speeds += [relative] * cluster.cores
    n = max(1, min(threads, len(speeds)))
    return sum(speeds[:n]) / (1 + params.contention * (n - 1))


def estimate_ms(workload: Workload, profile, threads: int, params: CostParams | None = None, *,
                end2end_bench: bool = False) -> float:
    """Estimated milliseconds per invoke through the TFLite interpreter (unrounded); `end2end_bench` estimates
    XNNPACK's own benchmark harness instead, as some calibration rows were measured."""
    params = params or shipped_params()
    compute_ms = core_cycles(workload.mix, profile.core, workload.kernels, params) / (profile.clock_ghz * 1e6)
    if workload.kernels == "xnnpack" and not end2end_bench:
        compute_ms *= params.delegate_factor
    serial = min(1.0, workload.serial_instructions / workload.instructions) if workload.instructions else 0.0
    compute_ms *= serial + (1 - serial) / thread_speed(workload, profile, params, threads)
    n = max(1, min(threads, profile.max_threads or 1))  # the barrier waits for every thread the pool runs
    compute_ms += workload.nodes * (params.node_kcycles + params.node_sync_kcycles * (n - 1)) / (profile.clock_ghz * 1e3)
    bandwidth = profile.memory_bandwidth_gbs * params.memory_efficiency
    dram = dram_bytes(workload, profile, params, threads)
    if params.streaming:
        streamed = streamed_bytes(workload, params)
        compute_ms += streamed / (bandwidth * params.stream_factor * 1e6)
        dram = max(0.0, dram - streamed)  # priced once: not hidden behind the arithmetic a second time
    memory_ms = dram / (bandwidth * 1e6)
    p = params.roofline_p
    return (compute_ms ** p + memory_ms ** p) ** (1 / p)


def streamed_bytes(workload: Workload, params: CostParams) -> int:
    """Bytes of the streaming nodes whose tensors do not fit on chip (CostParams.on_chip_kb)."""
    kinds = ("stream", "depthwise") if params.streaming_depthwise else ("stream",)
    return sum(b for kind, b in workload.streaming_nodes if kind in kinds and b > params.on_chip_kb * 1024)


def dram_bytes(workload: Workload, profile, params: CostParams, threads: int = 1) -> float:
    """Bytes one invoke moves to and from DRAM: the weights, read once (by each thread, with
    `params.weights_per_thread`), and each activation tensor written and read once."""
    weights = workload.weight_bytes * (min(threads, profile.max_threads) if params.weights_per_thread else 1)
    return weights + 2 * workload.activation_bytes


# Nodes whose multiply-accumulates reuse each loaded weight and activation many times: their arithmetic can hide
# their tensors' traffic. A depthwise convolution does 9 or 25 multiply-accumulates per output value and reuses no
# activation across channels: about 2 operations per byte, far below what any of these cores can do per byte of
# DRAM bandwidth. Every other node (elementwise, activation, resize, concatenation, reshape copy, pooling, padding, a
# detector's post-processing) streams its tensors with even fewer.
DENSE_NODES = frozenset({"CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL", "CONV_3D"})
DEPTHWISE_NODES = frozenset({"DEPTHWISE_CONV_2D"})


def _tensor_bytes(tensor) -> int:
    import numpy as np

    if tensor.is_constant or not all(d > 0 for d in tensor.shape):
        return 0
    return int(np.prod(tensor.shape, dtype=np.int64)) * np.dtype(tensor.dtype).itemsize


def streaming_nodes(model) -> tuple[tuple[str, int], ...]:
    """(kind, activation bytes read and written) of each node of a tflite_file.TFLiteModel that is not dense
    (DENSE_NODES): "depthwise" for a depthwise convolution, "stream" for the others; nodes without activation
    bytes are left out."""
    out = []
    for op in model.operators:
        if op.op_type in DENSE_NODES:
            continue
        size = sum(_tensor_bytes(model.tensors[i]) for i in (*op.inputs, *op.outputs) if i >= 0)
        if size:
            out.append(("depthwise" if op.op_type in DEPTHWISE_NODES else "stream", size))
    return tuple(out)


def interval_group(core: str, precision: str, kernels: str) -> list[str]:
    """Interval table keys for an estimate, most specific first (the first with enough rows is used)."""
    dot = "dot" if timings(core).dot_product else "nodot"
    return [f"{core}|{precision}|{kernels}", f"{dot}|{precision}|{kernels}", f"*|{precision}|{kernels}",
            f"*|{precision}|*", "*|*|*"]


MIN_INTERVAL_ROWS = 5
# Each side of an interval reaches at least this far (log) beyond the estimate: the interval is for the quantity
# estimated, so the estimate always lies inside it.
INTERVAL_FLOOR = math.log(1.10)


# How a band is drawn from held-out errors. Symmetric: ± the 90th percentile of |error| around the estimate.
# A bias measured on other models (the median of their errors) does not carry over to a model family the fit
# never saw: in leave-one-family-out the families' medians differ by about 30%, and a band shifted by one
# family's median missed the other's (coverage 53% against 90% nominal); the symmetric band drops that shift.
# Asymmetric: the 5th-95th percentile band, widened around the median (before issue 26).
SYMMETRIC_INTERVALS = True


def interval_from_errors(log_errors: list[float], evidence: int | None = None,
                         symmetric: bool | None = None) -> dict:
    """A band of log(estimate / published) holding the published figure for nominally 90% of models and devices
    like the ones held out: ± the 90th percentile of |error| (symmetric), or the 5th-95th percentile band
    (asymmetric). With n rows it is widened by 1 + 2/sqrt(n) (around the estimate, or around the median error).
    It is always built around the estimate: each side reaches at least 10% beyond it, so the estimate lies inside
    its own interval (the interval is for the quantity estimated). `evidence` replaces n in the widening when the
    errors are combined from fewer independent figures.
    """
    symmetric = SYMMETRIC_INTERVALS if symmetric is None else symmetric
    xs = sorted(log_errors)
    n = len(xs)

    def quantile(values: list[float], q: float) -> float:
        pos = q * (len(values) - 1)
        i = int(pos)
        return values[i] + (values[min(i + 1, len(values) - 1)] - values[i]) * (pos - i)

    widen = 1 + 2 / math.sqrt(evidence or n)
    floor = INTERVAL_FLOOR
    if symmetric:
        half = max(floor, quantile(sorted(abs(x) for x in xs), 0.90) * widen)
        return {"lo": round(-half, 4), "hi": round(half, 4), "rows": n}
    mid, lo, hi = quantile(xs, 0.5), quantile(xs, 0.05), quantile(xs, 0.95)
    low, high = mid - max(floor, (mid - lo) * widen), mid + max(floor, (hi - mid) * widen)
    return {"lo": round(min(low, -floor), 4), "hi": round(max(high, floor), 4), "rows": n}


def interval_ms(estimate: float, core: str, precision: str, kernels: str, *, widening: float = 1.0,
                params: CostParams | None = None) -> tuple[float, float, str]:
    """(low, high, group) of the published figure an estimate stands for."""
    params = params or shipped_params()
    group = next((g for g in interval_group(core, precision, kernels)
                  if params.intervals.get(g, {}).get("rows", 0) >= MIN_INTERVAL_ROWS), "*|*|*")
    band = params.intervals.get(group) or {"lo": -math.log(1.5), "hi": math.log(1.5), "rows": 0}
    mid = (band["lo"] + band["hi"]) / 2
    lo = min(mid + (band["lo"] - mid) * widening, -INTERVAL_FLOOR)  # around the estimate, whatever file the band
    hi = max(mid + (band["hi"] - mid) * widening, INTERVAL_FLOOR)  # came from
    return estimate / math.exp(hi), estimate / math.exp(lo), group
