"""Measure on the host: every variant and the float32 reference timed on this machine, interleaved.

`measure_on_host(ctx, built)` gives each variant's latency list (the host's entry first; the devices stage adds
its estimates to it), each variant's speed explanation, and the notes the report states.
"""

from __future__ import annotations

from edgequant.report.schema import LatencyReport
from edgequant.stages.context import BuildContext


def measure_on_host(ctx: BuildContext, built: list) -> tuple[dict[str, list[LatencyReport]], dict[str, dict], list[str]]:
    """Host latency of every variant (interleaved with the reference's), unless the recipe or the user skips it."""
    latencies: dict[str, list[LatencyReport]] = {b.variant.name: [] for b in built}
    explanations: dict[str, dict] = {}
    notes: list[str] = []
    b = ctx.recipe.benchmark
    if b.enabled and "host" in ctx.skipped:
        notes.append("host benchmark: skipped with --no-bench; no host latency was measured")
    if b.enabled and "host" not in ctx.skipped:
        from edgequant.bench.host import benchmark
        from edgequant.bench.speed_explanation import explain_speed

        names = [x.variant.name for x in built]
        models = [x.data for x in built]
        if ctx.reference not in names:
            names, models = [ctx.reference, *names], [ctx.reference_model(), *models]
        timed = ctx.timing_sample()
        with ctx.progress.task(f"benchmark {len(models)} models on the host", total=None) as task:
            results = benchmark(models, kernels=[b.kernels], threads=[b.threads], runs=b.runs, warmup=b.warmup,
                                names=names, inputs=timed and timed[0], inputs_description=timed and timed[1])
            task.advance()
        by_name = dict(zip(names, results))
        ref_ms = by_name[ctx.reference].latency.median_ms
        for x in built:
            r = by_name[x.variant.name]
            latencies[x.variant.name].append(
                LatencyReport(
                    device="host", ms=r.latency.median_ms, estimate=False,
                    speedup_vs_reference=ref_ms / r.latency.median_ms if r.latency.median_ms else None,
                    details=r.to_dict(samples=False),
                )
            )
            explanations[x.variant.name] = explain_speed(  # at the timed shape: a dynamic axis may not load at 1
                ctx.at_timed_shape(x.data), name=x.variant.name, results=[by_name[ctx.reference], r]
            ).to_dict()
    return latencies, explanations, notes
