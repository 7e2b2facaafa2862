"""Automatic mixed precision: keep the fewest, most sensitive layers in float until the accuracy gates pass.

Layers are ranked by their int8 output error (RMSE in quantization steps, from
`edgequant.layer_error`), worst first; layers that add no error beyond rounding
(pooling, reshapes) are never candidates. The search keeps one more layer in float
per step and evaluates the whole model on the recipe's evaluation data, stopping at
the first model that passes. The model is calibrated once for the whole search.
"""

from __future__ import annotations

from collections.abc import Callable

from edgequant.layer_error import ROUNDING_FLOOR, QuantizationAnalysis
from edgequant.progress import Progress
from edgequant.report.schema import EvaluationReport, FloatLayerStep, MixedPrecisionReport

Judge = Callable[[bytes], tuple[EvaluationReport, bool]]
"""Evaluate a candidate model: its evaluation against the reference, and whether its accuracy gates pass."""

HostLatency = Callable[[bytes], "float | None"]


def search_float_layers(
    analysis: QuantizationAnalysis,
    *,
    judge: Judge,
    host_latency: HostLatency,
    max_layers: int,
    float_ops: list[str],
    progress: Progress,
    label: str,
) -> tuple[bytes, MixedPrecisionReport]:
    candidates = [e.layer for e in analysis.layer_errors() if e.rmse_steps > ROUNDING_FLOOR / 2][:max_layers]
    model = analysis.quantized_model(float_ops=float_ops)
    plain_eval, passed = judge(model)
    report = MixedPrecisionReport(
        float_layers=[], float_ops=float_ops, automatic=True, plain_int8=plain_eval,
        plain_int8_size_bytes=len(model), searched_to_pass=passed,
    )
    if passed:
        return model, report
    size, latency = len(model), host_latency(model)
    chosen: list[str] = []
    with progress.task(f"search float layers for {label}", total=len(candidates)) as task:
        for layer in candidates:
            chosen.append(layer)
            model = analysis.quantized_model(chosen, float_ops)
            evaluation, passed = judge(model)
            step_latency = host_latency(model)
            report.steps.append(
                FloatLayerStep(
                    added_layer=layer,
                    float_layers=list(chosen),
                    size_bytes=len(model),
                    size_delta_bytes=len(model) - size,
                    host_latency_ms=step_latency,
                    latency_delta_ms=None if step_latency is None or latency is None else step_latency - latency,
                    evaluation=evaluation,
                    gates_passed=passed,
                )
            )
            size, latency = len(model), step_latency
            task.advance()
            if passed:
                break
    report.float_layers = list(chosen)
    report.searched_to_pass = passed
    return model, report
