"""Why a variant is (or is not) faster on this host: XNNPACK coverage, QUANTIZE/DEQUANTIZE
placement, where the multiply-accumulates are, and the CPU features the kernels depend on.

The coverage is predicted from the file (op and tensor types against `xnnpack_support.SUPPORTED`)
and, with `verify=True`, checked against the interpreter's real execution plan. When measured
latencies are given, the verdict says plainly whether a quantized model is faster than its float
reference here, and points to the simulated device estimates when it is not: a host x86 figure
does not predict an ARM edge device.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgequant.bench import xnnpack_support as xs
from edgequant.bench.cpu_features import HostFeatures, read_host_features

CLEARLY_FASTER = 0.90  # a paired ratio at most 0.90 counts as faster; closer to 1 is within noise and overheads
NOISY_CV = 0.25  # samples whose std exceeds a quarter of their mean: say so next to any verdict
MEMORY_BOUND_WEIGHTS = 1_000_000
"""Dense layers from about this many weights on make ≤4-bit weights pay in speed: below it the weights sit in
cache and unpacking them costs more than reading them (benchmarks/lowbit.py, docs/results/lowbit.md)."""
DEVICE_HINT = ("for an edge device, use the simulated ARM estimates, `edgequant bench MODEL --device NAME`: an ARM "
               "core runs other XNNPACK kernels (int8 dot-product ones where it has them) than this x86 host")


@dataclass(frozen=True)
class OpCoverage:
    """One (op type, tensor class) group of a model's operators."""

    op_type: str
    tensor_class: str
    count: int
    xnnpack_predicted: bool  # from the support table
    xnnpack_observed: int | None  # how many of `count` the interpreter really delegated (None: not checked)
    verified_entry: bool  # False for table entries inferred rather than probed
    macs: int  # multiply-accumulates of these operators (conv, depthwise, fully connected, matmul)
    condition: str = ""


@dataclass(frozen=True)
class QuantBoundaries:
    """QUANTIZE/DEQUANTIZE operators: at the model's edges (touching a model input or output),
    inside the graph (activations converted between representations mid-model), or on constant
    weights (fp16 weights dequantized once at load)."""

    quantize_at_edges: int
    dequantize_at_edges: int
    quantize_inside: int
    dequantize_inside: int
    dequantize_weights: int

    @property
    def inside(self) -> int:
        return self.quantize_inside + self.dequantize_inside


@dataclass(frozen=True)
class LatencyComparison:
    """A measured latency against a float32 reference: same kernels and threads, same interleaved run.

    `paired_ratio` is the median over rounds of (this invoke / the reference's invoke in the same
    round): both were timed within milliseconds of each other, so load from other processes that
    drifts over the run cancels out, which a ratio of two medians does not do.
    """

    reference: str
    kernels: str
    threads: int
    median_ms: float
    reference_median_ms: float
    paired_ratio: float
    noise_cv: float  # the larger coefficient of variation of the two sample sets
    cpu_per_wall: float  # the smaller median CPU/wall of the two: well under 1 at 1 thread = waiting for a core

    @property
    def ratio(self) -> float:
        return self.paired_ratio

    @property
    def clearly_faster(self) -> bool:
        return self.ratio <= CLEARLY_FASTER

    @property
    def noisy(self) -> bool:
        return self.noise_cv > NOISY_CV or (self.threads == 1 and self.cpu_per_wall < 0.8)

    def to_dict(self) -> dict:
        return dict(asdict(self), ratio_of_medians=self.median_ms / self.reference_median_ms,
                    clearly_faster=self.clearly_faster, noisy=self.noisy)


@dataclass(frozen=True)
class SpeedExplanation:
    model: str
    precision: str  # float32, float16, dynamic, int8, uint8, int16x8
    operators: int
    coverage: tuple[OpCoverage, ...]
    partitions_observed: int | None
    quant: QuantBoundaries
    host: HostFeatures
    findings: tuple[str, ...]
    comparisons: tuple[LatencyComparison, ...] = field(default=())
    verdict: str = ""

    @property
    def delegated_predicted(self) -> int:
        return sum(c.count for c in self.coverage if c.xnnpack_predicted)

    @property
    def delegated_observed(self) -> int | None:
        if any(c.xnnpack_observed is None for c in self.coverage):
            return None
        return sum(c.xnnpack_observed for c in self.coverage)

    @property
    def mismatches(self) -> list[OpCoverage]:
        """Groups where the table's prediction and the interpreter disagree."""
        return [c for c in self.coverage if c.xnnpack_observed is not None
                and c.xnnpack_observed != (c.count if c.xnnpack_predicted else 0)]

    def text(self) -> str:
        observed = self.delegated_observed
        lines = [
            f"{self.model}: {self.precision}, {self.operators} ops; XNNPACK takes "
            f"{observed if observed is not None else self.delegated_predicted}/{self.operators}"
            + (f" in {self.partitions_observed} partition(s)" if self.partitions_observed is not None else " (predicted)"),
        ]
        if self.verdict:
            lines.append(self.verdict)
        lines += [f"- {f}" for f in self.findings]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "precision": self.precision,
            "operators": self.operators,
            "delegated_predicted": self.delegated_predicted,
            "delegated_observed": self.delegated_observed,
            "partitions_observed": self.partitions_observed,
            "coverage": [asdict(c) for c in self.coverage],
            "quantize_dequantize": dict(asdict(self.quant), inside=self.quant.inside),
            "host": self.host.to_dict(),
            "findings": list(self.findings),
            "comparisons": [c.to_dict() for c in self.comparisons],
            "verdict": self.verdict,
            "text": self.text(),
        }


def explain_speed(
    model: str | Path | bytes,
    host_features: HostFeatures | None = None,
    *,
    verify: bool = True,
    name: str | None = None,
    results: Sequence = (),
) -> SpeedExplanation:
    """Explain the host speed of a .tflite (path or bytes).

    verify: also load it with XNNPACK and compare the predicted coverage with the real execution plan.
    results: BenchResults from one interleaved `benchmark()` call that includes this model and a float32
      model; the verdict then compares their medians (same kernels and threads).
    """
    from edgequant.model.tflite_file import read_tflite

    host = host_features or read_host_features()
    info = read_tflite(model)
    label = name or (str(model) if not isinstance(model, (bytes, bytearray)) else "model")
    classes = xs.classify_operators(info)
    macs = [_macs(info, op) for op in info.operators]
    observed_ops: set[int] | None = None
    partitions = None
    if verify and not info.custom_ops:
        from edgequant.model.runtime import execution_plan, load_interpreter

        plan = execution_plan(load_interpreter(model, kernels="xnnpack", threads=1))
        observed_ops, partitions = set(plan.delegated), len(plan.partitions)

    groups: dict[tuple[str, str], list[int]] = {}
    for op, cls in zip(info.operators, classes):
        groups.setdefault((op.op_type, cls), []).append(op.index)
    coverage = tuple(
        OpCoverage(
            op_type=op_type, tensor_class=cls, count=len(idx),
            xnnpack_predicted=xs.xnnpack_takes(op_type, cls),
            xnnpack_observed=None if observed_ops is None else sum(i in observed_ops for i in idx),
            verified_entry=xs.is_verified(op_type, cls),
            macs=sum(macs[i] for i in idx),
            condition=xs.CONDITIONS.get(op_type, ""),
        )
        for (op_type, cls), idx in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    )
    precision = xs.model_precision(classes)
    quant = _quant_boundaries(info)
    explanation = SpeedExplanation(
        model=label, precision=precision, operators=len(info.operators), coverage=coverage,
        partitions_observed=partitions, quant=quant, host=host, findings=(),
    )
    comparisons = tuple(_comparisons(label, precision, results))
    findings = tuple(_findings(explanation, comparisons)) + tuple(_low_bit_findings(info, precision))
    return SpeedExplanation(**{**explanation.__dict__, "findings": findings, "comparisons": comparisons,
                               "verdict": _verdict(precision, comparisons)})


def _quant_boundaries(info) -> QuantBoundaries:
    edges_in, edges_out = set(info.input_indices), set(info.output_indices)
    counts = Counter()
    for op in info.operators:
        if op.op_type not in ("QUANTIZE", "DEQUANTIZE"):
            continue
        kind = "quantize" if op.op_type == "QUANTIZE" else "dequantize"
        source = info.tensors[op.inputs[0]]
        if source.is_constant:
            counts["dequantize_weights"] += 1
        elif edges_in & set(op.inputs) or edges_out & set(op.outputs):
            counts[f"{kind}_at_edges"] += 1
        else:
            counts[f"{kind}_inside"] += 1
    return QuantBoundaries(counts["quantize_at_edges"], counts["dequantize_at_edges"], counts["quantize_inside"],
                           counts["dequantize_inside"], counts["dequantize_weights"])


def _macs(info, op) -> int:
    """Multiply-accumulates of one operator, from its tensors' static shapes (0 for other ops)."""
    try:
        out = info.tensors[op.outputs[0]].shape
        if op.op_type == "TRANSPOSE_CONV":  # inputs: output shape, weights [Cout,kh,kw,Cin], activations
            w, x = info.tensors[op.inputs[1]].shape, info.tensors[op.inputs[2]].shape
            return int(np.prod(x, dtype=np.int64)) * int(np.prod(w, dtype=np.int64)) // max(x[-1], 1)
        if op.op_type in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = info.tensors[op.inputs[1]].shape
            if op.op_type == "CONV_2D":
                return int(np.prod(out, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
            if op.op_type == "DEPTHWISE_CONV_2D":
                return int(np.prod(out, dtype=np.int64)) * int(w[1] * w[2])
            return int(np.prod(out, dtype=np.int64)) * int(w[-1])
        if op.op_type == "BATCH_MATMUL":
            a = info.tensors[op.inputs[0]].shape
            return int(np.prod(out, dtype=np.int64)) * int(a[-1])
    except (IndexError, ValueError):
        pass
    return 0


def _comparisons(label: str, precision: str, results: Sequence) -> list[LatencyComparison]:
    if precision == "float32" or not results:
        return []
    mine = [r for r in results if r.model == label]
    floats = [r for r in results if r.model != label and getattr(r, "precision", "") == "float32"]
    out = []
    for r in mine:
        ref = next((f for f in floats if f.kernels == r.kernels and f.threads == r.threads), None)
        if ref is None:
            continue
        a, b = np.asarray(r.samples_ms, dtype=np.float64), np.asarray(ref.samples_ms, dtype=np.float64)
        paired = (float(np.median(a / b)) if a.size == b.size and a.size
                  else r.latency.median_ms / ref.latency.median_ms)
        out.append(LatencyComparison(
            reference=ref.model, kernels=r.kernels, threads=r.threads, median_ms=r.latency.median_ms,
            reference_median_ms=ref.latency.median_ms, paired_ratio=paired,
            noise_cv=max(r.latency.cv, ref.latency.cv), cpu_per_wall=min(r.cpu_per_wall, ref.cpu_per_wall),
        ))
    return out


def _verdict(precision: str, comparisons: Sequence[LatencyComparison]) -> str:
    """One plain sentence on the default path (XNNPACK) when it was measured, else on what was."""
    if not comparisons:
        return ""
    main = [c for c in comparisons if c.kernels == "xnnpack"] or list(comparisons)
    parts = []
    for c in main:
        how = (f"{1 / c.ratio:.2f}x faster" if c.clearly_faster else
               f"NOT faster ({c.ratio:.2f}x the time)" if c.ratio >= 1 else
               f"not clearly faster ({c.ratio:.2f}x the time, within noise and overheads)")
        parts.append(f"{c.threads} thread(s) {c.median_ms:.2f} ms vs {c.reference_median_ms:.2f} ms, {how}")
    slow = [c for c in main if not c.clearly_faster]
    kernels = main[0].kernels
    head = f"On this host with {kernels}, {precision} is " + (
        "faster than float32" if not slow else
        "NOT faster than float32" if len(slow) == len(main) else "not faster than float32 at every thread count")
    text = f"{head}: " + "; ".join(parts) + " (median; ratio = median of paired per-round ratios)."
    if slow:
        text += f" Do not read this as the edge-device speed: {DEVICE_HINT}."
    noisy = [c for c in main if c.noisy]
    if noisy:
        worst = max(noisy, key=lambda c: c.noise_cv)
        text += (f" The machine was busy (coefficient of variation up to {worst.noise_cv:.0%}, CPU/wall "
                 f"{min(c.cpu_per_wall for c in noisy):.2f}): trust large ratios, rerun for small ones.")
    return text


def _dynamic_depthwise_finding(comparisons: Sequence[LatencyComparison]) -> str:
    """The hybrid depthwise fallback, with its consequence as the measured comparison has it (the verdict's
    numbers): never "slower" beside a verdict that says faster."""
    text = ("Dynamic-range depthwise convolutions (int8 weights, float activations) are not taken by XNNPACK: "
            "they run on the builtin hybrid kernels")
    main = [c for c in comparisons if c.kernels == "xnnpack"] or list(comparisons)
    if not main:
        return text + ", which can make a dynamic-range model slower than float32. Full-integer int8 avoids it."
    if all(c.clearly_faster for c in main):
        best = min(main, key=lambda c: c.ratio)
        return (text + f"; the model is still {1 / best.ratio:.2f}x faster than float32 here, and full-integer "
                "int8 avoids the fallback.")
    return text + ", which is why this model is not faster than float32 here. Full-integer int8 avoids it."


def _findings(e: SpeedExplanation, comparisons: Sequence[LatencyComparison]) -> list[str]:
    out: list[str] = []
    observed = e.delegated_observed
    taken = observed if observed is not None else e.delegated_predicted
    fallback = [c for c in e.coverage if (c.xnnpack_observed if c.xnnpack_observed is not None
                                          else (c.count if c.xnnpack_predicted else 0)) < c.count]
    total_macs = sum(c.macs for c in e.coverage) or 1
    if e.precision == "int16x8":
        out.append("XNNPACK delegates no int16x8 operator: the whole model runs on the builtin int16 kernels, "
                   "which are much slower than XNNPACK's fp32 or int8 kernels; int16x8 buys accuracy, not speed, on the CPU.")
    elif fallback:
        desc = ", ".join(f"{c.count - (c.xnnpack_observed or 0) if c.xnnpack_observed is not None else c.count} "
                         f"{c.op_type} ({c.tensor_class})" for c in fallback)
        fb_macs = sum(c.macs for c in fallback)
        out.append(f"{e.operators - taken} of {e.operators} ops fall back to the builtin kernels: {desc}"
                   + (f", {100 * fb_macs / total_macs:.0f}% of the multiply-accumulates" if fb_macs else "")
                   + (f"; the graph is split into {e.partitions_observed} XNNPACK partitions, each hand-off costs a sync"
                      if e.partitions_observed and e.partitions_observed > 1 else "") + ".")
        if any(c.op_type == "DEPTHWISE_CONV_2D" and c.tensor_class == xs.DYNAMIC for c in fallback):
            out.append(_dynamic_depthwise_finding(comparisons))
    else:
        out.append(f"XNNPACK takes all {e.operators} ops" + (f" in {e.partitions_observed} partition(s)." if e.partitions_observed else "."))
    for c in e.mismatches:
        out.append(f"The support table predicted XNNPACK {'takes' if c.xnnpack_predicted else 'skips'} {c.op_type} "
                   f"({c.tensor_class}), but the interpreter delegated {c.xnnpack_observed} of {c.count} "
                   f"{('(' + c.condition + ')') if c.condition else ''}".rstrip() + ".")
    q = e.quant
    if q.inside:
        out.append(f"{q.inside} QUANTIZE/DEQUANTIZE ops sit inside the graph: each converts a whole activation "
                   "tensor between float and integer and marks a precision change mid-model.")
    if q.quantize_at_edges or q.dequantize_at_edges:
        out.append(f"{q.quantize_at_edges} QUANTIZE / {q.dequantize_at_edges} DEQUANTIZE at the model's edges "
                   "(float interface): one pass over the input and output, cheap.")
    if q.dequantize_weights:
        out.append(f"{q.dequantize_weights} DEQUANTIZE ops turn fp16 weights into fp32 once, at load: XNNPACK then "
                   "runs fp32 kernels, so float16 halves the file, not the latency, on this host.")
    macs_by_type = Counter()
    for c in e.coverage:
        macs_by_type[c.op_type] += c.macs
    if macs_by_type.get("DEPTHWISE_CONV_2D") and e.precision in ("int8", "uint8"):
        share = 100 * macs_by_type["DEPTHWISE_CONV_2D"] / total_macs
        out.append(f"{share:.0f}% of the multiply-accumulates are depthwise convolutions, which no int8 dot-product "
                   "instruction accelerates (there is no reduction over channels to pack 4 int8 products into); "
                   "int8 depthwise also requantizes every output, work fp32 does not do.")
    out.append(_host_finding(e.host, e.precision))
    return out


def _low_bit_findings(info, precision: str) -> list[str]:
    """Where ≤4-bit weights pay: the file always, the speed only for large, memory-bound dense layers."""
    if precision not in ("dynamic-int4", "dynamic-int2"):
        return []
    dense = [int(np.prod(info.tensors[op.inputs[1]].shape, dtype=np.int64)) for op in info.operators
             if op.op_type == "FULLY_CONNECTED" and len(op.inputs) > 1 and info.tensors[op.inputs[1]].is_constant]
    largest = max(dense, default=0)
    bits = {t.dtype for t in info.tensors if t.is_constant and t.dtype in ("int2", "int4")}
    text = (f"Weights are stored as {'/'.join(sorted(bits))} ({info.weight_bytes:,} B of weights in the file): each "
            "packed weight takes 2 or 4 bits instead of float32's 32, so the file shrinks whatever the model. "
            "Speed is another matter: XNNPACK's qd8 kernels quantize each "
            "activation to int8 and unpack the low-bit weights to int8 in registers, extra work per weight that "
            "pays only where reading the weights from memory dominates, i.e. large dense layers. ")
    if largest >= MEMORY_BOUND_WEIGHTS:
        text += (f"The largest dense layer here has {largest:,} weights (≥{MEMORY_BOUND_WEIGHTS:,}): memory-bound, "
                 "where ≤4-bit weights can beat int8 and float32.")
    else:
        text += (f"The largest dense layer here has {largest:,} weights (<{MEMORY_BOUND_WEIGHTS:,}): its weights fit "
                 "in cache, so expect no speed-up over int8 or float32; the gain is size.")
    if any(xs.classify_operators(info)[op.index] == xs.DYNAMIC4 and op.op_type == "CONV_2D" for op in info.operators):
        text += " INT4 convolutions run on the builtin hybrid kernels, not XNNPACK: pack convolutions as INT8 for speed."
    return [text]


def _host_finding(host: HostFeatures, precision: str) -> str:
    dot = host.int8_dot_product
    name = host.cpu or host.arch
    if host.is_x86:
        fp32 = "AVX-512 FMA" if host.has("avx512f") else "AVX2 FMA" if host.has("avx2") else "SSE"
        if precision in ("float32", "float16"):
            return f"Host CPU ({name}): XNNPACK runs fp32 kernels on {fp32}" + (f"; it also has {dot} for int8." if dot else ".")
        if dot:
            return (f"Host CPU ({name}) has {dot}: XNNPACK's int8 GEMM kernels use it (family '{host.int8_kernel_family}'), "
                    f"4 int8 multiply-accumulates per lane per instruction against one fp32 FMA on {fp32}, so int8 "
                    "convolutions and fully connected layers can run about 2x faster than fp32 here. Depthwise "
                    "convolutions, quantize/dequantize and ops left to the builtin kernels get no such gain.")
        return (f"Host CPU ({name}) has no int8 dot product (no VNNI): XNNPACK's int8 kernels multiply through "
                f"16-bit madd steps, about the throughput of {fp32} for fp32, so int8 is not expected to be faster "
                "on this host, whatever it does on an ARM core with dot product.")
    if host.is_arm:
        if dot:
            return (f"Host CPU has {dot}: XNNPACK's int8 kernels ('{host.int8_kernel_family}') do 4 int8 MACs per lane per "
                    "instruction; int8 is expected to be 2-3x faster than fp32.")
        return ("Host CPU has NEON but no dot product (asimddp): int8 kernels widen to 16 bits; expect a modest "
                "int8 gain over fp32.")
    return f"Host CPU {host.arch}: no XNNPACK SIMD kernel family known to edgequant."
