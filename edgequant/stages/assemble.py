"""Assemble the report: every stage's results for every variant, in one `Report`.

`assemble_report(ctx, built, evaluations, latencies, explanations, notes)` also checks the gates (through
`edgequant.stages.gate`) and says whether the build passed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgequant.data.sources import describe
from edgequant.recipe.loader import recipe_hash
from edgequant.report.schema import GateReport, Report, VariantReport
from edgequant.stages.context import BuildContext
from edgequant.stages.evaluation import evaluation_report
from edgequant.stages.gate import gate_variant, reference_check
from edgequant.stages.variants import layer_error_reports
from edgequant.version import __version__


def assemble_report(ctx: BuildContext, built: list, evaluations, latencies, explanations, notes) -> Report:
    recipe, recipe_path, exported = ctx.recipe, ctx.recipe_path, ctx.exported
    reference_eval = evaluations.get(ctx.reference)
    reference_size = ctx.reference_size
    problems, allowed = reference_check(recipe, reference_eval)
    variants, failed = [], []
    for b in built:
        name = b.variant.name
        evaluation = evaluations.get(name)
        lat = latencies.get(name, [])
        gates = gate_variant(b, evaluation, reference_eval, lat, ctx.skipped, problems, allowed)
        failed += [g.describe() for g in gates if not g.passed]
        variants.append(
            VariantReport(
                **{k: v for k, v in asdict(b.artifact).items()},
                size_vs_reference=b.artifact.size_bytes / reference_size if reference_size else None,
                evaluation=evaluation_report(evaluation, reference_eval) if evaluation else None,
                latency=lat,
                gates=[GateReport(**{k: v for k, v in g.to_dict().items() if k != "variant"}) for g in gates],
                layer_errors=layer_error_reports(b.layer_errors),
                mixed_precision=b.mixed,
                int8_fixes=b.fixes,
                speed_explanation=explanations.get(name),
                arm_parity=ctx.parity.get(name, []),
            )
        )
    eval_spec = recipe.evaluation_data()
    evaluation_data = None
    if evaluations:
        evaluation_data = f"{describe(eval_spec.source)}, {next(iter(evaluations.values())).samples} samples"
        if ctx.reported_samples is not None:
            from edgequant.quantization.mixed_precision import SELECTION_DESCRIPTION

            evaluation_data += f": every sample but {SELECTION_DESCRIPTION}, which chose the layers kept in float"
    host: dict[str, Any] = {}
    if recipe.benchmark.enabled:
        from edgequant.bench.cpu_features import read_host_features

        host = read_host_features().to_dict()
    return Report(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        edgequant_version=__version__,
        recipe={"name": recipe.name, "path": str(Path(recipe_path).resolve()) if recipe_path else None,
                "sha256": recipe_hash(recipe)},
        source_model={"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256},
        reference=ctx.reference,
        reference_problems=problems,
        evaluation_data=evaluation_data,
        host=host,
        variants=variants,
        passed=not failed,
        failed_gates=failed,
        warnings=_reference_warnings(problems, allowed) + ctx.warnings,
        notes=ctx.notes + notes,
    )


def _reference_warnings(problems: list[str], allowed: bool) -> list[str]:
    if not problems:
        return []
    consequence = (
        "evaluation.allow_degenerate_reference is set, so its gates were checked anyway"
        if allowed else "the gates that compare against it fail (set evaluation.allow_degenerate_reference: true "
        "if this is intended)"
    )
    return [f"the float32 reference is degenerate: {'; '.join(problems)}. Agreement with it proves nothing "
            f"(an untrained model, or preprocessing that blanks the input?); {consequence}"]
