"""All-integer fixes for an int8 variant: better int8 than the converter's min/max rounding gives, with every
layer still int8 (no float layers, no custom ops).

    equalize         cross-layer equalization of the float model's weights   (equalize.py)
    bias_correction  bias correction for the mean error of int8 weights      (bias_correction.py)
    ranges           percentile or MSE activation ranges at calibration       (ranges.py)

The first two transform a copy of the Keras 3 model, which is exported once more and
converted as usual; equalization must leave the float function unchanged, which is checked
on the calibration data before quantizing. The third rewrites the ranges the converter
calibrated before it quantizes. Then the fixed int8 model is compared with plain int8 on
the calibration data, and kept only if it agrees with float32 better (or as well, with a
smaller output error): the fixes never make a variant worse than plain int8 on that data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgequant.convert import RepresentativeData, calibrate_only, convert_variant, quantize_calibrated
from edgequant.errors import BuildError, InputError
from edgequant.report.schema import Int8FixesReport

FIT_SAMPLES = 256  # calibration samples the weight transforms measure activations on (held in memory)
FLOAT_RTOL = 1e-4  # equalization may move a float output by at most this times the largest output, plus ATOL
FLOAT_ATOL = 1e-5


@dataclass
class FixedInt8:
    data: bytes  # the variant's artifact: the fixed model, or plain int8 when the fixes did not help
    report: Int8FixesReport
    saved_model_dir: Path  # the transformed float model
    edit_calibration: Callable[[bytes], bytes] | None  # the range setting, for the per-layer analysis


def requested(variant) -> list[str]:
    names = [n for n in ("equalize", "bias_correction") if getattr(variant, n)]
    return names + ([f"ranges:{variant.ranges}"] if variant.ranges != "minmax" else [])


def _range_editor(variant, representative: RepresentativeData, details: dict) -> Callable[[bytes], bytes]:
    """Rewrites the calibrated min/max of a converter's calibrate-only model with `variant.ranges`."""
    from edgequant.int8_fixes.ranges import set_ranges

    def edit(calibrated: bytes) -> bytes:
        edited, changes = set_ranges(calibrated, representative, variant.ranges, variant.percentile)
        details["range_changes"] = len(changes)
        return edited

    return edit


def build_fixed_int8(exported, variant, representative: RepresentativeData, *, plain: bytes, reference: bytes,
                     work_dir: Path) -> FixedInt8:
    """Apply `variant`'s fixes to the exported model and quantize it; keep plain int8 if that is better."""
    samples = np.stack([np.asarray(x, dtype=np.float32) for _, x in zip(range(FIT_SAMPLES), representative())])
    details: dict = {}
    saved_model = exported.saved_model_dir
    if variant.equalize or variant.bias_correction:
        model = _transformed(exported.keras_model, samples, variant, details)
        from edgequant.source_model import export_keras_model

        target = work_dir / "int8_fixes" / variant.name
        target.mkdir(parents=True, exist_ok=True)
        saved_model = export_keras_model(model, target, input_shape=list(exported.input.shape)).saved_model_dir
    edit = _range_editor(variant, representative, details) if variant.ranges != "minmax" else None
    if edit is not None:
        data = quantize_calibrated(edit(calibrate_only(saved_model, variant, representative)), variant)
    else:
        data = convert_variant(saved_model, variant, representative)

    plain_fit, fixed_fit = (_against_reference(m, reference, samples) for m in (plain, data))
    kept = (fixed_fit["agreement"], -fixed_fit["mse"]) >= (plain_fit["agreement"], -plain_fit["mse"])
    report = Int8FixesReport(
        requested=requested(variant), kept=kept, decided_on=f"the first {len(samples)} calibration samples",
        plain=plain_fit, fixed=fixed_fit, **details,
    )
    return FixedInt8(data if kept else plain, report, saved_model, edit)


def _transformed(model, samples: np.ndarray, variant, details: dict):
    import keras

    from edgequant.int8_fixes.graph import is_keras3

    if model is None or not is_keras3(model):
        raise InputError(f"variant {variant.name!r}: equalize and bias_correction transform a Keras 3 model's "
                         "weights; this model is not one (ranges works on any model)")
    copy = keras.models.clone_model(model, recursive=True)
    copy.set_weights(model.get_weights())
    before = _predict(model, samples)
    if variant.equalize:
        from edgequant.int8_fixes.equalize import equalize, with_clipped_relus

        result = equalize(copy, samples)
        copy = with_clipped_relus(copy, result.clipped)
        change = float(np.abs(_predict(copy, samples) - before).max())
        tolerance = FLOAT_RTOL * float(np.abs(before).max()) + FLOAT_ATOL
        if not change <= tolerance:
            raise BuildError(f"variant {variant.name!r}: equalization changed the float model's outputs by {change:.3g} "
                             f"on the calibration data (tolerance {tolerance:.3g}); not quantizing it")
        details["float_check"] = {"max_abs_change": change, "tolerance": tolerance}
        details["equalized_pairs"] = [p.describe() for p in result.pairs]
    if variant.bias_correction:
        from edgequant.int8_fixes.bias_correction import correct_biases

        corrected = _predict(copy, samples)
        corrections = correct_biases(copy, samples, variant.per_channel)
        details["bias_shift"] = {
            "layers": float(len(corrections)),
            "max_correction": max((c.max_shift for c in corrections), default=0.0),
            "max_abs_float_change": float(np.abs(_predict(copy, samples) - corrected).max()),
        }
    return copy


def _predict(model, samples: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(samples, batch_size=32, verbose=0))


def _against_reference(model: bytes, reference: bytes, samples: np.ndarray) -> dict[str, float]:
    from edgequant.evaluate import BatchRunner

    ref = _run(BatchRunner(reference), samples)
    out = _run(BatchRunner(model), samples)
    return {"agreement": float((out.argmax(-1) == ref.argmax(-1)).mean()), "mse": float(np.mean((out - ref) ** 2))}


def _run(runner, samples: np.ndarray) -> np.ndarray:
    return np.concatenate([runner(samples[i:i + 32]) for i in range(0, len(samples), 32)])
