"""A variant's gates checked against what the build measured. A missing measurement is an error, never a pass.

The gates that compare a variant with the reference fail when the reference is degenerate
(its outputs do not depend on its input): agreeing with such a reference proves nothing.

A measurement the user skipped on purpose (`build --no-devices`, `--no-bench`) fails its gate as "not measured",
so a quick build can never turn a latency gate green.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from edgequant.errors import BuildError
from edgequant.measure.evaluate import Evaluation
from edgequant.recipe.schema import Gates


@dataclass(frozen=True)
class GateResult:
    variant: str
    gate: str  # the recipe key, e.g. "max_accuracy_drop_points" or "max_latency_ms.rpi4"
    limit: float
    value: float | None  # None: not measured, see `not_measured`
    passed: bool
    estimate: bool = False  # the value is a simulated-device estimate
    reason: str = ""  # why the gate failed although its value is within the limit
    not_measured: str | None = None  # why the build did not measure it (the gate then fails)

    def describe(self) -> str:
        comparison = "<=" if self.gate.startswith("max") else ">="
        status = "passed" if self.passed else "FAILED"
        est = " (estimate)" if self.estimate else ""
        why = f": {self.reason}" if self.reason else ""
        value = f"not measured ({self.not_measured})" if self.not_measured else f"{self.value:.4g}{est}"
        return f"{self.variant}: {self.gate} {status}: {value} (limit {comparison} {self.limit:g}){why}"

    def to_dict(self) -> dict:
        return asdict(self)


def check_gates(
    variant_name: str,
    gates: Gates,
    *,
    size_bytes: int,
    evaluation: Evaluation | None,
    reference: Evaluation | None,
    latency_ms: dict[str, float],
    estimated_devices: frozenset[str] = frozenset(),
    reference_problems: Sequence[str] = (),
    skipped_devices: Mapping[str, str] | None = None,
) -> list[GateResult]:
    """`reference_problems` (from evaluate.reference_problems) fail every gate measured against the reference;
    `skipped_devices` ({device or "host": why its latency was not measured}) fail their latency gates."""
    results: list[GateResult] = []
    degenerate = f"the reference is degenerate: {'; '.join(reference_problems)}" if reference_problems else ""
    skipped_devices = skipped_devices or {}

    def gate(name: str, limit: float | None, value: float | None, higher_is_better: bool, estimate=False,
             against_reference=False):
        if limit is None:
            return
        skipped = skipped_devices.get(name.removeprefix("max_latency_ms.")) if name.startswith("max_latency") else None
        if skipped:
            results.append(GateResult(variant_name, name, float(limit), None, False, estimate, not_measured=skipped))
            return
        if value is None:
            raise BuildError(f"variant {variant_name!r}: gate {name} has nothing to check: it was not measured")
        passed = value >= limit if higher_is_better else value <= limit
        reason = degenerate if against_reference and degenerate else ""
        results.append(GateResult(variant_name, name, float(limit), float(value), passed and not reason, estimate,
                                  reason))

    top1 = evaluation.top1 if evaluation else None
    ref_top1 = reference.top1 if reference else None
    if (gates.max_accuracy_drop_points is not None or gates.max_accuracy_drop_percent is not None) and (
        top1 is None or ref_top1 is None
    ):
        raise BuildError(
            f"variant {variant_name!r}: accuracy gates need labelled evaluation data and a classifier output"
        )
    if top1 is not None and ref_top1 is not None:
        drop_points = (ref_top1 - top1) * 100
        gate("max_accuracy_drop_points", gates.max_accuracy_drop_points, drop_points, False, against_reference=True)
        drop_percent = drop_points / ref_top1 if ref_top1 > 0 else 0.0
        gate("max_accuracy_drop_percent", gates.max_accuracy_drop_percent, drop_percent, False,
             against_reference=True)
    agreement = evaluation.agreement * 100 if evaluation and evaluation.agreement is not None else None
    gate("min_agreement_percent", gates.min_agreement_percent, agreement, True, against_reference=True)
    gate("min_cosine", gates.min_cosine, evaluation.cosine if evaluation else None, True, against_reference=True)
    gate("max_size_kib", gates.max_size_kib, size_bytes / 1024, False)
    for device, limit in gates.max_latency_ms.items():
        gate(f"max_latency_ms.{device}", limit, latency_ms.get(device), False, device in estimated_devices)
    return results


def accuracy_gates_pass(gates: Gates, evaluation: Evaluation, reference: Evaluation) -> bool:
    """Only the gates an evaluation decides (used by the automatic mixed-precision search)."""
    accuracy_only = gates.model_copy(update={"max_size_kib": None, "max_latency_ms": {}})
    return all(
        r.passed
        for r in check_gates("search", accuracy_only, size_bytes=0, evaluation=evaluation, reference=reference,
                             latency_ms={})
    )
