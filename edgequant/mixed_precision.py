"""Automatic mixed precision: keep the fewest, most sensitive layers in float until the accuracy gates pass.

As NNCF's accuracy control does for OpenVINO, sensitivity is measured on the task,
not guessed: the candidates are the layers whose int8 output differs from float at all
(from `edgequant.layer_error`; pooling and reshapes, which add no error, never
qualify), and each candidate is ranked by how much the model's
accuracy recovers when that layer alone stays in float, on a subset of the
evaluation data. The search then keeps one more layer in float per step, in that
order, and evaluates the whole model on all the evaluation data, stopping at the
first model that passes. The model is calibrated once for the whole search.
"""

from __future__ import annotations

from collections.abc import Callable

from edgequant.layer_error import QuantizationAnalysis
from edgequant.progress import Progress
from edgequant.report.schema import EvaluationReport, FloatLayerStep, MixedPrecisionReport

Judge = Callable[[bytes, bool], tuple[EvaluationReport, bool]]
"""Evaluate a candidate model (on a subset of the data when the flag is set): its evaluation, and whether
its accuracy gates pass."""

RANKED_CANDIDATES_PER_LAYER = 4  # how many candidates to rank per layer the search may keep in float
EXACT = 0.01  # layers whose output error is below this many steps lose nothing (pooling, reshape)


def _quality(e: EvaluationReport) -> tuple[float, float, float]:
    return (e.top1 if e.top1 is not None else 0.0, e.agreement if e.agreement is not None else 0.0, e.cosine)

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
    noisy = [e.layer for e in analysis.layer_errors() if e.rmse_steps > EXACT]
    noisy = noisy[: RANKED_CANDIDATES_PER_LAYER * max_layers]
    model = analysis.quantized_model(float_ops=float_ops)
    plain_eval, passed = judge(model, False)
    report = MixedPrecisionReport(
        float_layers=[], float_ops=float_ops, automatic=True, plain_int8=plain_eval,
        plain_int8_size_bytes=len(model), searched_to_pass=passed,
    )
    if passed:
        return model, report
    size, latency = len(model), host_latency(model)
    with progress.task(f"rank {len(noisy)} layers of {label} by sensitivity", total=len(noisy)) as task:
        recovered = {}
        for layer in noisy:
            model = analysis.quantized_model(analysis.float_group(layer), float_ops)
            recovered[layer] = _quality(judge(model, True)[0])
            task.advance()
    candidates = sorted(noisy, key=lambda layer: recovered[layer], reverse=True)[:max_layers]
    report.sensitivity_order = list(candidates)
    chosen: list[str] = []
    with progress.task(f"search float layers for {label}", total=len(candidates)) as task:
        for layer in candidates:
            chosen += [name for name in analysis.float_group(layer) if name not in chosen]
            model = analysis.quantized_model(chosen, float_ops)
            evaluation, passed = judge(model, False)
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
