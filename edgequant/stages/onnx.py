"""The ONNX copies: variants that ask for `formats: [..., onnx]`, and the check of an ONNX source model.

`build_onnx(ctx, variants)` writes them (a failed export costs its file only, with a warning);
`onnx_report(ctx, onnx_out, evaluations)` gives the report's ONNX fields.
"""

from __future__ import annotations

from typing import Any

from edgequant.data.stream import iter_samples
from edgequant.measure.evaluate import Evaluation
from edgequant.measure.onnx_parity import PARITY_SAMPLES, check_against_onnxruntime
from edgequant.stages.context import BuildContext
from edgequant.stages.evaluation import evaluation_report


def build_onnx(ctx: BuildContext, variants: list) -> list:
    """The variants that ask for `formats: [..., onnx]`, written as ONNX (int8 calibrated on the same data)."""
    if not variants:
        return []
    from edgequant.quantization.onnx_export import build_onnx_variants

    with ctx.progress.task(f"write {len(variants)} variants as ONNX") as task:
        written, failed = build_onnx_variants(
            variants, ctx.exported.saved_model_dir, ctx.work_dir, lambda v: ctx.representative(v)()
        )
        task.advance()
    ctx.warnings += failed  # reported; the .tflite artifacts still commit
    return written


def onnx_report(ctx: BuildContext, onnx_out: list, evaluations: dict[str, Evaluation]) -> dict:
    """The report's ONNX fields: the ONNX source checked against onnxruntime, and the ONNX artifacts."""
    if ctx.exported.onnx is None and not onnx_out:
        return {}
    from edgequant.quantization.onnx_export import onnx_artifact_reports

    update: dict[str, Any] = {}
    spec = ctx.eval_spec or ctx.recipe.calibration
    samples = [s.x for s in iter_samples(spec, ctx.exported.data_inputs, limit=PARITY_SAMPLES, role="onnx")] if spec else []
    if ctx.exported.onnx is not None and samples:
        check = check_against_onnxruntime(ctx.exported.onnx, ctx.reference_model(), samples)
        update["onnx_source_check"] = {**ctx.exported.onnx.to_dict(), **check}
    if onnx_out:
        reference = evaluations.get(ctx.reference)
        b = ctx.recipe.benchmark
        update["onnx_artifacts"] = onnx_artifact_reports(
            onnx_out, {a.file: evaluation_report(evaluations[a.file], reference)
                       for a in onnx_out if a.file in evaluations},
            samples[0] if samples and b.enabled else None, threads=b.threads, runs=b.runs, warmup=b.warmup,
        )
    return update
