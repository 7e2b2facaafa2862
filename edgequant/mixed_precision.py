"""Automatic mixed precision: keep the fewest, most sensitive layers in float until the accuracy gates pass.

As NNCF's accuracy control does for OpenVINO, sensitivity is measured on the task,
not guessed: the candidates are the layers whose int8 output differs from float at all
(from `edgequant.layer_error`; pooling and reshapes, which add no error, never
qualify), and each candidate is ranked by how much accuracy comes back when that
layer alone stays in float. The search then keeps one more layer in float per step,
in that order. It ships:
- the first step that passes the gates, which is the smallest passing float set, since each step adds to the last;
- if none passes, the most accurate step (the smallest one among equals), and says so.
It stops early when `PATIENCE` steps in a row bring no gain.

Every decision is taken on the selection slice of the evaluation data (`in_selection`),
which the build then leaves out of every figure it reports, so the reported accuracy
of the shipped model is measured on data the search never saw.

Each step is priced by what does not change from run to run: its size, and, when the
recipe lists devices, the estimated latency on the first one (counted instructions). Host
time, where measured, is shown as a measurement with its spread, never as the cost.

The model is calibrated once for the whole search. The search starts from what the
analysis quantizes with nothing in float (step 0): a fix that keeps every layer in
integer (e.g. equalizing weights before calibration) plugs in by handing the search an
analysis of the fixed model, and the float layers are then only searched if it fails.
"""

from __future__ import annotations

from collections.abc import Callable

from edgequant.layer_error import IoTypeConflict, QuantizationAnalysis
from edgequant.progress import Progress
from edgequant.report.schema import EvaluationReport, FloatLayerStep, MixedPrecisionReport, StepPrice

Judge = Callable[[bytes], tuple[EvaluationReport, bool]]
"""Evaluate a candidate model on the selection slice: its evaluation, and whether its accuracy gates pass."""
Pricer = Callable[[bytes], StepPrice]
"""What a candidate model costs: size, device estimate where devices are listed, host time where measured."""

RANKED_CANDIDATES_PER_LAYER = 4  # how many candidates to rank per layer the search may keep in float
EXACT = 0.01  # layers whose output error is below this many steps lose nothing (pooling, reshape)
PATIENCE = 2  # steps in a row without a gain after which more float layers are not tried
SELECTION_SAMPLES = 2000  # at most this many evaluation samples choose the layers
SELECTION_DESCRIPTION = (
    f"the even-numbered samples among the first {2 * SELECTION_SAMPLES:,} of the evaluation data"
)


def in_selection(index: int) -> bool:
    """Whether evaluation sample `index` belongs to the selection slice.

    Every other sample, not the first ones: image folders are read in name order, so a
    prefix could hold one kind of image only.
    """
    return index < 2 * SELECTION_SAMPLES and index % 2 == 0


def quality(e: EvaluationReport) -> tuple[float, float, float]:
    """What "more accurate" means here: top-1, then agreement, then cosine to 4 decimals (finer is noise)."""
    return (e.top1 if e.top1 is not None else 0.0, e.agreement if e.agreement is not None else 0.0,
            round(e.cosine, 4))


def search_float_layers(
    analysis: QuantizationAnalysis,
    *,
    judge: Judge,
    price: Pricer,
    max_layers: int,
    float_ops: list[str],
    progress: Progress,
    label: str,
) -> tuple[bytes, MixedPrecisionReport]:
    """The model to ship and the report of the search (its `selection_data` is the caller's to fill in)."""
    models: list[bytes] = []
    report = MixedPrecisionReport(float_layers=[], float_ops=float_ops, automatic=True)

    def step(added: str | None, chosen: list[str], model: bytes) -> bool:
        evaluation, passed = judge(model)
        models.append(model)
        report.steps.append(FloatLayerStep(
            step=len(report.steps), added_layer=added, float_layers=list(chosen), size_bytes=len(model),
            price=price(model), evaluation=evaluation, gates_passed=passed,
        ))
        return passed

    if step(None, [], analysis.quantized_model(float_ops=float_ops)):
        return _ship(report, models, 0, "plain int8 passes the gates: nothing is kept in float")

    candidates = _ranked_candidates(analysis, judge, max_layers, float_ops, progress, label, report)
    report.sensitivity_order = candidates
    chosen: list[str] = []
    best, stalled = quality(report.steps[0].evaluation), 0
    with progress.task(f"search float layers for {label}", total=len(candidates)) as task:
        for layer in candidates:
            added = [name for name in analysis.float_group(layer) if name not in chosen]
            task.advance()
            if not added:  # an earlier step's group holds it already: the model would not change
                continue
            chosen += added
            passed = step(layer, chosen, analysis.quantized_model(chosen, float_ops))
            if passed:
                return _ship(report, models, len(report.steps) - 1,
                             f"step {len(report.steps) - 1} is the smallest float set that passes the gates")
            current = quality(report.steps[-1].evaluation)
            best, stalled = (current, 0) if current > best else (best, stalled + 1)
            if stalled >= PATIENCE:
                break
    why = (f"stopped after {PATIENCE} steps in a row without a gain" if stalled >= PATIENCE
           else f"tried {len(candidates)} candidate layers (max_float_layers: {max_layers})")
    most_accurate = max(range(len(report.steps)), key=lambda i: (quality(report.steps[i].evaluation), -i))
    return _ship(report, models, most_accurate,
                 f"no step passes the gates ({why}): shipped step {most_accurate}, the most accurate")


def _ranked_candidates(analysis, judge, max_layers, float_ops, progress, label, report) -> list[str]:
    """Layers with any int8 error, ranked by what keeping each alone in float recovers."""
    noisy = [e.layer for e in analysis.layer_errors() if e.rmse_steps > EXACT]
    noisy = noisy[: RANKED_CANDIDATES_PER_LAYER * max_layers]
    recovered = {}
    with progress.task(f"rank {len(noisy)} layers of {label} by sensitivity", total=len(noisy)) as task:
        for layer in noisy:
            try:
                model = analysis.quantized_model(analysis.float_group(layer), float_ops)
            except IoTypeConflict as exc:
                report.skipped_layers[layer] = str(exc)
            else:
                recovered[layer] = quality(judge(model)[0])
            task.advance()
    return sorted(recovered, key=lambda layer: recovered[layer], reverse=True)[:max_layers]


def _ship(report: MixedPrecisionReport, models: list[bytes], index: int, outcome: str):
    shipped = report.steps[index]
    report.shipped_step = index
    report.float_layers = list(shipped.float_layers)
    report.searched_to_pass = shipped.gates_passed
    report.outcome = outcome
    return models[index], report
