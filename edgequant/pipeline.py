"""`edgequant build`: the thin orchestrator that runs the stages in order.

    recipe -> source model -> export once -> variants (.tflite bytes) -> ONNX copies
        -> evaluate -> host benchmark -> simulated devices -> gates + report -> artifacts + manifest

Each stage is a module of `edgequant.stages`; this one only wires them and owns the staging of
outputs, so that a failed or interrupted build changes nothing on disk.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgequant.data.stream import InputSpec, iter_samples
from edgequant.errors import BuildError, DataError, InputError
from edgequant.output.output_dir import Staging
from edgequant.process import fault_points
from edgequant.process.interrupts import CheckingProgress, stop_on_signals, temporary_dir
from edgequant.process.parallel import default_jobs
from edgequant.process.progress import NullProgress, Progress
from edgequant.quantization.convert_worker import ConversionWorker
from edgequant.recipe.loader import load_recipe
from edgequant.recipe.schema import CALIBRATED_MODES, Recipe
from edgequant.recipe_check import check_recipe
from edgequant.report.render import plural, render_report
from edgequant.report.schema import NotBuiltReport, Report
from edgequant.shared_work import SharedWork
from edgequant.stages.assemble import assemble_report
from edgequant.stages.context import INTERNAL_REFERENCE, BuildContext, calibration_count, field_context
from edgequant.stages.devices import estimate_on_devices
from edgequant.stages.evaluation import evaluate_all
from edgequant.stages.host import measure_on_host
from edgequant.stages.manifest import write_manifest
from edgequant.stages.onnx import build_onnx, onnx_report
from edgequant.stages.variants import Artifact, build_auto_float, build_variant
from edgequant.trust import trusted

__all__ = ["Artifact", "BuildResult", "build_recipe"]


@dataclass
class BuildResult:
    recipe: Recipe
    output_dir: Path
    artifacts: list[Artifact]
    report: Report
    registered: list = field(default_factory=list)  # registry.RegisteredVersion, when logged to a registry

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def failed_gates(self) -> list[str]:
        return self.report.failed_gates

    def artifact(self, name: str) -> Artifact:
        return next(a for a in self.artifacts if a.name == name)

    def path(self, name: str) -> Path:
        return self.output_dir / self.artifact(name).file


def build_recipe(
    recipe: Recipe | str | Path,
    *,
    output_dir: str | Path | None = None,
    only: list[str] | None = None,
    progress: Progress | None = None,
    trust_code: bool = False,
    registry: str | None = None,
    devices: bool = True,
    host_benchmark: bool = True,
    wait: bool = False,
    jobs: int | None = None,
    shared: SharedWork | None = None,
    ray: str | None = None,
) -> BuildResult:
    """Build a recipe (a Recipe or the path of a recipe file). Raises EdgequantError on bad input.

    `trust_code` (or EDGEQUANT_TRUST_CODE=1; never the recipe) allows callable data sources and models
    whose loading runs Python (Lambda layers); see edgequant.trust.

    Gate failures do not raise: the result's `passed` is False and its report names them.
    With `registry` (or the recipe's `registry:`), the committed build is logged to that MLflow store.
    devices / host_benchmark: False skips the simulated devices / the host benchmark (quick iterations);
    the report says so, and a latency gate on what was skipped fails as "not measured".
    `wait`: if another build holds the output directory, wait for it instead of failing.
    `jobs`: how many emulated device runs run at once; default the number of cores. The result does not
    depend on it.
    `shared`: the work several builds in one call share (edgequant.shared_work): each model exported once.
    `ray`: run the emulated device runs as tasks on this Ray cluster (an address, or "auto"); edgequant.process.ray_backend.
    """
    progress = CheckingProgress(progress or NullProgress())  # a swallowed Ctrl-C still stops the build
    recipe_path = None
    if not isinstance(recipe, Recipe):
        recipe_path = str(recipe)
        recipe = load_recipe(recipe)
    variants = _selected(recipe, only)
    out = Path(output_dir) if output_dir is not None else recipe.output_path()
    trust_code = trusted(trust_code)
    declared = check_recipe(recipe, recipe_path=recipe_path, trust_code=trust_code, output_dir=out)
    if registry or recipe.registry:  # a registry that cannot take the build is said before the build, not after
        from edgequant.output.registry import check_registry

        check_registry(registry or recipe.registry)
    calibrated = recipe.calibration is not None and any(v.mode in CALIBRATED_MODES for v in variants)

    with stop_on_signals(), temporary_dir("build") as work, Staging(out, wait=wait) as staging, \
            ExitStack() as stack:
        # the child process that exports and converts: the build's own, started now (its TensorFlow import
        # overlaps the calibration check), or the one the builds of this call share
        worker = shared.worker if shared is not None else stack.enter_context(ConversionWorker())
        if calibrated and declared is not None:  # the model file declares its input: check before the export
            with field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, declared, progress)
        with progress.task(f"export {recipe.model.path.name}") as task:
            if shared is None:
                exported = worker.export(recipe.model.path, Path(work), recipe.model.input_shape, trust_code=trust_code,
                                         custom_objects=recipe.model.custom_objects)
            else:
                exported, reused = shared.export(recipe.model.path, recipe.model.input_shape, trust_code=trust_code,
                                                 custom_objects=recipe.model.custom_objects)
                if reused:
                    progress.log(f"{recipe.name}: {recipe.model.path.name}: the export of an earlier recipe, reused")
            task.advance()
        fault_points.reached("exported")
        if calibrated and declared is None:
            with field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, exported.data_inputs, progress)

        ctx = BuildContext(recipe, recipe_path, exported, progress, work, _reference_name(variants),
                           devices=devices, host_benchmark=host_benchmark, jobs=jobs or default_jobs(), ray=ray,
                           split_evaluation=any(_is_auto(v) for v in variants), worker=worker)
        # Conversions stay one after another: see edgequant.process.parallel for what running them side by side measured.
        built, not_built = [], []
        for v in variants:
            try:
                built.append(build_auto_float(ctx, v) if _is_auto(v) else build_variant(ctx, v))
            except BuildError as exc:  # this variant cannot be built (the converter refused it or crashed): the others ship
                not_built.append(NotBuiltReport(name=v.name, mode=v.mode, reason=_not_built_reason(exc, v)))
                progress.log(f"{v.name}: not built: {not_built[-1].reason}")
        if not built:
            raise BuildError("; ".join(f"variant {n.name!r}: not built: {n.reason}" for n in not_built))

        onnx_out = build_onnx(ctx, [b.variant for b in built if "onnx" in recipe.variant_formats(b.variant)])
        evaluations = evaluate_all(ctx, built, onnx_out)
        latencies, explanations, latency_notes = measure_on_host(ctx, built)
        latency_notes += estimate_on_devices(ctx, built, latencies)
        report = assemble_report(ctx, built, evaluations, latencies, explanations, latency_notes)
        report = report.model_copy(update=dict(onnx_report(ctx, onnx_out, evaluations), not_built=not_built))
        fault_points.reached("converted")
        for b in built:
            staging.path(b.artifact.file).write_bytes(b.data)
        for a in onnx_out:
            staging.path(a.file).write_bytes(a.data)
        write_manifest(recipe, recipe_path, exported, built, staging, [a.manifest_entry() for a in onnx_out],
                       ctx.calibration_used, not_built)
        render_report(report, staging.dir)
        staging.commit()
    result = BuildResult(recipe=recipe, output_dir=out, artifacts=[b.artifact for b in built], report=report)
    if registry or recipe.registry:
        from edgequant.output.registry import log_build  # needs the mlflow extra: imported only when asked

        result.registered = log_build(result, registry or recipe.registry)
    return result


def _not_built_reason(exc: BuildError, variant) -> str:
    """The one line a report gives for a variant that could not be built: the error without the variant's label."""
    reason = getattr(exc, "reason", None) or str(exc)
    label = f"variant {variant.name!r} ({variant.mode}): "
    return reason.removeprefix(label).removeprefix(f"variant {variant.name!r}: ")


def _reference_name(variants: list) -> str:
    """The float32 model the others are compared with: the recipe's float32 variant itself, else an internal one."""
    return next((v.name for v in variants if v.mode == "float32"), INTERNAL_REFERENCE)


def _is_auto(variant) -> bool:
    return getattr(variant, "float_layers", None) == "auto"


def _selected(recipe: Recipe, only: list[str] | None) -> list:
    if not only:
        return list(recipe.variants)
    names = [v.name for v in recipe.variants]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise InputError(f"--variant {unknown[0]!r}: the recipe has no such variant (it has {', '.join(names)})")
    return [v for v in recipe.variants if v.name in only]


def _check_calibration(recipe: Recipe, model_input: InputSpec, progress: Progress) -> None:
    """Read the calibration stream once before converting, so bad data fails fast and says which sample."""
    limit = max(calibration_count(recipe, v) or 0 for v in recipe.variants if v.mode in CALIBRATED_MODES) or None
    low, high, count = float("inf"), float("-inf"), 0
    with progress.task("check calibration data", total=limit) as task:
        for sample in iter_samples(recipe.calibration, model_input, limit=limit, role="calibration"):
            arrays = sample.x.values() if isinstance(sample.x, dict) else (
                sample.x if isinstance(sample.x, (list, tuple)) else [sample.x])
            for array in arrays:
                array = np.asarray(array)
                if array.size:
                    low, high = min(low, float(array.min())), max(high, float(array.max()))
            count += 1
            task.advance()
    if count and low == high:  # calibration would give every activation a zero range: int8 ignores the input
        raise DataError(f"all {plural(count, 'calibration sample')} hold the same value ({low:g}) everywhere, "
                        "after preprocessing: int8 calibration needs real, varied inputs like those the model will "
                        "see (check the source and its preprocess)")
