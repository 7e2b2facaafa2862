"""Evaluate: every model (the variants, their ONNX copies, the float32 reference) on the same batches.

`evaluate_all(ctx, built, onnx_out)` gives each model's `Evaluation` by name (an ONNX copy as `<name>.onnx`);
`evaluation_report` states one against the reference.
"""

from __future__ import annotations

from edgequant.data.stream import iter_batches
from edgequant.measure.evaluate import Evaluation, evaluate
from edgequant.report.formatting import plural
from edgequant.report.schema import EvaluationReport
from edgequant.stages.context import BuildContext, field_context


def evaluate_all(ctx: BuildContext, built: list, onnx_out: list | None = None) -> dict[str, Evaluation]:
    """Every variant on the same batches; a variant also written as ONNX is run as `<name>.onnx` too."""
    if ctx.eval_spec is None:
        return {}
    total = ctx.eval_spec.samples
    if total is not None and ctx.reported_samples is not None:
        total = sum(map(ctx.reported_samples, range(total)))
    models = {b.variant.name: b.data for b in built if b.variant.name != ctx.reference}
    if onnx_out:
        from edgequant.quantization.onnx_export import OnnxRunner

        models.update({a.file: OnnxRunner(a.data, ctx.recipe.benchmark.threads) for a in onnx_out})
    with ctx.progress.task(f"evaluate {plural(len(models) + 1, 'model')}", total=total) as task:
        return evaluate_models(ctx, models, on_batch=task.advance)


def evaluate_models(ctx: BuildContext, models: dict[str, bytes], on_batch=None, limit: int | None = None,
                    keep=None) -> dict[str, Evaluation]:
    """Every model on the evaluation data: the samples `keep` accepts, by default the reported ones."""
    spec = ctx.eval_spec
    batches = iter_batches(spec, ctx.exported.data_inputs, spec.batch_size, limit=limit, role="evaluation",
                           keep=keep or ctx.reported_samples)
    with field_context(ctx.recipe_path, ["evaluation"]):
        return evaluate(
            {ctx.reference: ctx.reference_model(), **models}, batches, reference=ctx.reference, top_k=spec.top_k,
            on_batch=on_batch, outputs=spec.outputs, output_kinds=spec.output_kinds,
        )


def evaluation_report(e: Evaluation, reference: Evaluation | None) -> EvaluationReport:
    drop = None
    if reference is not None and e.top1 is not None and reference.top1 is not None:
        drop = (reference.top1 - e.top1) * 100
    return EvaluationReport(**e.to_dict(), accuracy_drop_points=drop)
