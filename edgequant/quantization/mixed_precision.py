"""Automatic mixed precision: keep the fewest, most sensitive layers in float until the accuracy gates pass.

As NNCF's accuracy control does for OpenVINO, sensitivity is measured on the task,
not guessed: the candidates are the layers whose int8 output differs from float at all
(from `edgequant.quantization.layer_error`; pooling and reshapes, which add no error, never
qualify), and each candidate is ranked by how much accuracy comes back when that
layer alone stays in float. The search then keeps one more layer in float per step,
in that order. It ships:
- the first step that passes the gates, which is the smallest passing float set, since each step adds to the last;
- if none passes, the most accurate step (the smallest one among equals), and says so.
It stops early when `PATIENCE` steps in a row bring no gain.

Every decision is taken on the selection slice of the evaluation data (`in_selection`),
which the build then leaves out of every figure it reports, so the reported accuracy
of the shipped model is measured on data the search never saw.

A step is a gain only if it is significantly more faithful to float32 than the best step before it,
on the same selection samples: a one-sided sign test on the per-sample differences (each sample's
share of top-1 classes, per position and output, that match float32's; the cosine of its outputs to
float32's for a model without class outputs), whose p-value must be below SIGNIFICANCE. On a
classifier this is McNemar's exact test on the samples where exactly one of the two agrees with
float32. Without a significant gain the search stops after PATIENCE steps, and when no step passes
the gates it ships the best step it found significant, plain int8 if none: a one-sample gain on
40 samples does not buy hundreds of KiB of float weights.

Each step is priced by what does not change from run to run: its size, and, when the
recipe lists devices, the estimated latency on the first one (counted instructions). Host
time, where measured, is shown as a measurement with its spread, never as the cost.

The model is calibrated once for the whole search. The search starts from what the
analysis quantizes with nothing in float (step 0): a fix that keeps every layer in
integer (e.g. equalizing weights before calibration) plugs in by handing the search an
analysis of the fixed model, and the float layers are then only searched if it fails.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from edgequant.measure.evaluate import BatchRunner, cosine_rows
from edgequant.process.progress import Progress
from edgequant.quantization.layer_error import IoTypeConflict, QuantizationAnalysis
from edgequant.report.schema import EvaluationReport, FloatLayerStep, MixedPrecisionReport, StepPrice

Judge = Callable[[bytes], tuple[EvaluationReport, bool, np.ndarray]]
"""Evaluate a candidate model on the selection slice: its evaluation, whether its accuracy gates pass, and its
per-sample fidelity to float32 (`ScoredRunner.sample_scores`)."""
Pricer = Callable[[bytes], StepPrice]
"""What a candidate model costs: size, device estimate where devices are listed, host time where measured."""

RANKED_CANDIDATES_PER_LAYER = 4  # how many candidates to rank per layer the search may keep in float
EXACT = 0.01  # layers whose output error is below this many steps lose nothing (pooling, reshape)
PATIENCE = 2  # steps in a row without a gain after which more float layers are not tried
SIGNIFICANCE = 0.05  # a step is a gain when the sign test's one-sided p-value is below this
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

    scores: list[np.ndarray] = []
    best = 0  # the step every later one must beat significantly

    def step(added: str | None, chosen: list[str], model: bytes) -> bool:
        evaluation, passed, sample_scores = judge(model)
        models.append(model)
        p_value = sign_test(sample_scores, scores[best]) if scores else None
        scores.append(sample_scores)
        report.steps.append(FloatLayerStep(
            step=len(report.steps), added_layer=added, float_layers=list(chosen), size_bytes=len(model),
            price=price(model), evaluation=evaluation, gates_passed=passed, p_value=p_value,
        ))
        return passed

    if step(None, [], analysis.quantized_model(float_ops=float_ops)):
        return _ship(report, models, 0, "plain int8 passes the gates: nothing is kept in float")

    candidates = _ranked_candidates(analysis, judge, max_layers, float_ops, progress, label, report)
    report.sensitivity_order = candidates
    chosen: list[str] = []
    stalled = 0
    with progress.task(f"search float layers for {label}", total=len(candidates)) as task:
        for layer in candidates:
            added = [name for name in analysis.float_group(layer) if name not in chosen]
            task.advance()
            if not added:  # an earlier step's group holds it already: the model would not change
                continue
            chosen += added
            passed = step(layer, chosen, analysis.quantized_model(chosen, float_ops))
            current = report.steps[-1]
            if passed:
                vs_plain = sign_test(scores[-1], scores[0])
                caveat = "" if vs_plain < SIGNIFICANCE else (
                    f"; its gain over plain int8 is not significant on {current.evaluation.samples} selection samples "
                    f"(sign test p = {vs_plain:.2g}): the gates may pass by chance")
                return _ship(report, models, current.step,
                             f"step {current.step} is the smallest float set that passes the gates{caveat}")
            gain = quality(current.evaluation) > quality(report.steps[best].evaluation) \
                and current.p_value is not None and current.p_value < SIGNIFICANCE
            best, stalled = (current.step, 0) if gain else (best, stalled + 1)
            if stalled >= PATIENCE:
                break
    why = (f"stopped after {PATIENCE} steps in a row without a significant gain" if stalled >= PATIENCE
           else f"tried {len(candidates)} candidate layers (max_float_layers: {max_layers})")
    if best == 0:
        higher = any(quality(s.evaluation) > quality(report.steps[0].evaluation) for s in report.steps[1:])
        return _ship(report, models, 0, f"no step passes the gates ({why}): shipped step 0, plain int8, since "
                     + ("no step was significantly more faithful to float32 than it (the higher scores are within "
                        f"the noise of the selection samples: sign test p >= {SIGNIFICANCE:g})" if higher
                        else "no step was more accurate"))
    return _ship(report, models, best, f"no step passes the gates ({why}): shipped step {best}, the most accurate "
                 f"by a significant margin (sign test p = {report.steps[best].p_value:.2g} against the best step before)")


def sign_test(new: np.ndarray, old: np.ndarray) -> float:
    """One-sided p-value that `new` scores higher than `old` on the same samples: the exact binomial (sign) test
    on the samples where they differ (McNemar's exact test when the scores are 0 or 1). 1.0 when none differ."""
    if len(new) != len(old):
        raise ValueError(f"scores of {len(new)} and {len(old)} samples: not the same samples")
    higher, lower = int((new > old).sum()), int((new < old).sum())
    differing = higher + lower
    if differing == 0:
        return 1.0
    return sum(math.comb(differing, k) for k in range(higher, differing + 1)) / 2**differing


def fidelity(outputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> np.ndarray:
    """Per sample: the share of top-1 classes (per position, over the class outputs) that match the reference's,
    or, for a model without class outputs, the cosine of all its outputs to the reference's (for one value per
    sample, 1 - its error over the reference's RMS)."""
    names = [n for n in reference if n in outputs]
    n = len(reference[names[0]])
    ranked = [name for name in names if reference[name].ndim >= 2 and reference[name].shape[-1] > 1]
    if ranked:
        return np.mean([(outputs[name].argmax(-1) == reference[name].argmax(-1)).reshape(n, -1).mean(axis=1)
                        for name in ranked], axis=0)
    flat = [np.concatenate([d[name].reshape(n, -1) for name in names], axis=1) for d in (outputs, reference)]
    if flat[0].shape[1] == 1:
        # one value per sample: its cosine is only its sign (1.0 for any error that keeps it), which no search
        # could tell apart; the error against the reference's RMS ranks samples instead (1.0 when exact)
        y, ref = (f[:, 0].astype(np.float64) for f in flat)
        rms = float(np.sqrt((ref**2).mean()))
        return 1.0 - np.abs(y - ref) / (rms if rms > 0 else 1.0)
    return cosine_rows(*flat)


class ReferenceRunner(BatchRunner):
    """The float32 reference, keeping its last batch's outputs for the ScoredRunner run after it on that batch
    (`evaluate` runs the reference first on every batch)."""

    def __init__(self, model: bytes):
        super().__init__(model)
        self.last: dict[str, np.ndarray] = {}

    def run_all(self, x) -> dict[str, np.ndarray]:
        self.last = super().run_all(x)
        return self.last


class ScoredRunner(BatchRunner):
    """A candidate that records each sample's fidelity to the reference's outputs on the same batch."""

    def __init__(self, model: bytes, reference: ReferenceRunner):
        super().__init__(model)
        self._reference, self._scores = reference, []

    def run_all(self, x) -> dict[str, np.ndarray]:
        outputs = super().run_all(x)
        self._scores.append(fidelity(outputs, self._reference.last))
        return outputs

    def sample_scores(self) -> np.ndarray:
        return np.concatenate(self._scores) if self._scores else np.zeros(0)


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
