"""Gate: check each variant's gates (size, accuracy against the reference, latency) on what the build measured.

`reference_check(recipe, reference_eval)` says whether the float32 reference is degenerate and whether the
recipe allows that; `gate_variant(...)` gives a variant's `GateResult`s.
"""

from __future__ import annotations

from edgequant.measure.evaluate import Evaluation, reference_problems
from edgequant.measure.gates import GateResult, check_gates
from edgequant.recipe.schema import Recipe
from edgequant.report.schema import LatencyReport


def reference_check(recipe: Recipe, reference_eval: Evaluation | None) -> tuple[list[str], bool]:
    """(problems, allowed): what makes the reference degenerate, and whether the recipe accepts it anyway."""
    problems = reference_problems(reference_eval) if reference_eval else []
    allowed = bool(problems) and recipe.evaluation is not None and recipe.evaluation.allow_degenerate_reference
    return problems, allowed


def gate_variant(built, evaluation: Evaluation | None, reference_eval: Evaluation | None,
                 latency: list[LatencyReport], skipped: dict[str, str], problems: list[str],
                 allowed: bool) -> list[GateResult]:
    """The variant's gates, checked; none if the recipe gives it none."""
    if built.variant.gates is None:
        return []
    return check_gates(
        built.variant.name, built.variant.gates, size_bytes=built.artifact.size_bytes, evaluation=evaluation,
        reference=reference_eval, latency_ms={x.device: x.ms for x in latency},
        estimated_devices=frozenset(x.device for x in latency if x.estimate), skipped_devices=skipped,
        reference_problems=[] if allowed else problems,
    )
