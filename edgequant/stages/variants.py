"""Convert each variant to .tflite bytes: calibration, the int8 fixes, the per-layer analysis, float layers.

`build_variant(ctx, variant)` and `build_auto_float(ctx, variant)` (for `float_layers: auto`) return a `Built`:
the bytes, the `Artifact` that describes them, and what the conversion found (layer errors, the float-layer
search, the int8 fixes' report). A variant that cannot be built raises BuildError.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from itertools import islice
from typing import Any

from edgequant.data.stream import iter_samples
from edgequant.measure.gates import accuracy_gates_pass
from edgequant.model.tflite_file import read_tflite
from edgequant.recipe.schema import CALIBRATED_MODES, LOWBIT_MODES
from edgequant.report.formatting import plural
from edgequant.report.schema import Int8FixesReport, LayerErrorReport, MixedPrecisionReport, StepPrice
from edgequant.stages.context import BuildContext, calibration_count, field_context
from edgequant.stages.evaluation import evaluate_models, evaluation_report

DEBUG_SAMPLES = 32  # samples the per-layer error analysis compares float and int8 activations on (at most)
ANALYSIS_CALIBRATION_SECONDS = 120.0  # a variant that took longer to calibrate gets no default per-layer analysis


@dataclass
class Artifact:
    """One built variant: its file and what the file holds."""

    name: str
    mode: str
    file: str
    size_bytes: int
    sha256: str
    inputs: list[dict]
    outputs: list[dict]
    convert_seconds: float

    def manifest_entry(self) -> dict[str, Any]:
        entry = asdict(self)
        entry.pop("convert_seconds")
        return entry


@dataclass
class Built:
    """A variant converted: its bytes, its artifact, and what its conversion found."""

    variant: Any
    data: bytes
    artifact: Artifact
    layer_errors: list = field(default_factory=list)
    mixed: MixedPrecisionReport | None = None
    fixes: Int8FixesReport | None = None


def build_variant(ctx: BuildContext, variant) -> Built:
    with ctx.variant_context(variant):
        started = time.perf_counter()
        layer_errors, mixed, fixed = [], None, None
        if variant.mode == "float32" and ctx.reference_built is not None:
            data = ctx.reference_built
        elif variant.mode in CALIBRATED_MODES:
            count = calibration_count(ctx.recipe, variant)
            calibrating = time.perf_counter()
            with ctx.progress.task(f"calibrate + convert {variant.name} ({variant.mode})", total=count) as task:
                data = ctx.convert(ctx.exported.saved_model_for(variant.mode), variant,
                                   ctx.representative(variant, task))
            fixed = _fix_int8(ctx, variant, data) if variant.mode == "int8" and variant.int8_fixes else None
            data = fixed.data if fixed else data
            if variant.mode == "int8" and (variant.analyse_layers or variant.mixed_precision) \
                    and not _analysis_skipped(ctx, variant, time.perf_counter() - calibrating):
                analysis = _analysis(ctx, variant)
                layer_errors = analysis.layer_errors()
                if fixed:
                    fixed.report.layer_errors_plain = layer_error_reports(layer_errors)
                    if fixed.report.kept:
                        analysis = _analysis(ctx, variant, fixed)
                        layer_errors = analysis.layer_errors()
                if variant.mixed_precision:
                    data = analysis.quantized_model(variant.float_layers, variant.float_ops)
                    mixed = MixedPrecisionReport(
                        float_layers=list(variant.float_layers), float_ops=list(variant.float_ops), automatic=False
                    )
        elif variant.mode == "qat":
            from edgequant.qat import build_qat_variant  # tfmot changes what tf.keras means: import on demand

            data = build_qat_variant(ctx.recipe, variant, ctx.exported, ctx.progress)
        elif variant.mode in LOWBIT_MODES:
            from edgequant.lowbit import build_lowbit_variant  # the lowbit extra: imported only for these modes

            data, packed = build_lowbit_variant(ctx.recipe, variant, ctx.exported, ctx.progress,
                                                ctx.reference_model)
            ctx.notes.append(f"{variant.name}: weights read back from the file: {packed.describe()}; per-layer "
                             "error not measured (TF's QuantizationDebugger analyses int8 conversions only)")
        else:
            with ctx.progress.task(f"convert {variant.name} ({variant.mode})") as task:
                data = ctx.convert(ctx.exported.saved_model_dir, variant)
                task.advance()
        if variant.mode == "float32":
            ctx.keep_reference(data)
        return Built(variant, data, make_artifact(variant, data, time.perf_counter() - started), layer_errors, mixed,
                     fixed.report if fixed else None)


def build_auto_float(ctx: BuildContext, variant) -> Built:
    from edgequant.quantization.mixed_precision import (
        SELECTION_DESCRIPTION,
        SELECTION_SAMPLES,
        ReferenceRunner,
        ScoredRunner,
        in_selection,
        search_float_layers,
    )

    with ctx.variant_context(variant):
        started = time.perf_counter()
        fixed = None
        if variant.int8_fixes:  # all-integer fixes first: the search starts from the fixed model
            plain = ctx.convert(ctx.exported.saved_model_for(variant.mode), variant, ctx.representative(variant))
            fixed = _fix_int8(ctx, variant, plain)
        analysis = _analysis(ctx, variant, fixed if fixed and fixed.report.kept else None)

        def judge(candidate: bytes):
            reference = ReferenceRunner(ctx.reference_model())
            scored = ScoredRunner(candidate, reference)  # each sample's fidelity, for the search's sign test
            results = evaluate_models(ctx, {"candidate": scored, ctx.reference: reference},
                                      limit=2 * SELECTION_SAMPLES, keep=in_selection)
            passed = accuracy_gates_pass(variant.gates, results["candidate"], results[ctx.reference])
            return evaluation_report(results["candidate"], results[ctx.reference]), passed, scored.sample_scores()

        def search(analysis):
            return search_float_layers(analysis, judge=judge, price=lambda model: step_price(ctx, model),
                                       max_layers=variant.max_float_layers, float_ops=list(variant.float_ops),
                                       progress=ctx.progress, label=variant.name)

        data, mixed = search(analysis)
        if fixed and fixed.report.kept and not mixed.searched_to_pass:
            # Fixes that move the weights (adaround, bias correction) stay in a layer kept in float, so
            # keeping it in float no longer undoes its rounding: search from plain int8 as well.
            plain_analysis = _analysis(ctx, variant)
            plain_data, plain_mixed = search(plain_analysis)
            if plain_mixed.searched_to_pass:
                data, mixed, analysis = plain_data, plain_mixed, plain_analysis
                fixed.report.kept = False
                fixed.report.decided_on += ("; not used: float_layers: auto passed its gates only when "
                                            "searching from plain int8")
        mixed.selection_data = f"{SELECTION_DESCRIPTION} ({mixed.steps[0].evaluation.samples} samples)"
        if not mixed.searched_to_pass:
            ctx.progress.log(f"{variant.name}: float_layers: auto: {mixed.outcome}")
        seconds = time.perf_counter() - started
        return Built(variant, data, make_artifact(variant, data, seconds), analysis.layer_errors(), mixed,
                     fixed.report if fixed else None)


def _analysis(ctx: BuildContext, variant, fixed=None):
    """The per-layer analysis of `variant`, on the model its int8 fixes made when `fixed` is given."""
    from edgequant.quantization.layer_error import DEBUG_SECONDS, QuantizationAnalysis

    spec = ctx.eval_spec or ctx.recipe.calibration
    samples = iter_samples(spec, ctx.exported.data_inputs, role="analysis")
    if ctx.reported_samples is not None:  # the layer errors choose candidates: keep them off reported data
        samples = (s for s in samples if not ctx.reported_samples(s.index))
    debug = [s.x for s in islice(samples, DEBUG_SAMPLES)]
    saved_model = fixed.saved_model_dir if fixed else ctx.exported.saved_model_for(variant.mode)
    edit = fixed.edit_calibration if fixed else None
    started = time.perf_counter()
    with ctx.progress.task(f"analyse layers of {variant.name}{' (fixed)' if fixed else ''}") as task:
        analysis = QuantizationAnalysis(saved_model, variant, ctx.representative(variant), debug, edit)
        analysis.layer_errors()
        task.advance()
    ctx.notes.append(
        f"{variant.name}: the per-layer analysis{' of the fixed model' if fixed else ''} took "
        f"{time.perf_counter() - started:.1f} s: a second calibration, then the layers compared on "
        f"{plural(analysis.debug_samples_used, 'sample')} (at most {len(debug)}, within about "
        f"{DEBUG_SECONDS:g} s); `analyse_layers: false` skips it"
    )
    if analysis.on_twin:
        ctx.notes.append(
            f"{variant.name}: the per-layer errors were measured on a twin of the variant with float32 input and "
            f"output (the same int8 quantization inside); the artifact itself has {variant.input_type} input and "
            f"{variant.output_type} output"
        )
    return analysis


def _analysis_skipped(ctx: BuildContext, variant, calibration_seconds: float) -> bool:
    """Whether the default per-layer analysis is left out because it would calibrate a slow model again; it
    runs whenever the recipe asks for it (analyse_layers: true, float layers)."""
    if variant.mixed_precision or "analyse_layers" in variant.model_fields_set \
            or calibration_seconds <= ANALYSIS_CALIBRATION_SECONDS:
        return False
    ctx.notes.append(
        f"{variant.name}: no per-layer analysis: calibrating took {calibration_seconds:.0f} s, and the analysis "
        f"calibrates again (by default it is left out when that takes over {ANALYSIS_CALIBRATION_SECONDS:g} s); "
        "`analyse_layers: true` runs it"
    )
    return True


def _fix_int8(ctx: BuildContext, variant, plain: bytes):
    from edgequant.int8_fixes import build_fixed_int8, requested

    if len(ctx.exported.inputs) > 1:
        ctx.notes.append(f"{variant.name}: int8 fixes ({', '.join(requested(variant))}) not applied: they feed "
                         f"a model with one input, and this one has {len(ctx.exported.inputs)}; the artifact "
                         "is plain int8")
        return None
    with ctx.progress.task(f"int8 fixes for {variant.name}: {', '.join(requested(variant))}") as task:
        fixed = build_fixed_int8(ctx.exported, variant, ctx.representative(variant), plain=plain,
                                 reference=ctx.reference_model(), work_dir=ctx.work_dir)
        task.advance()
    return fixed


def step_price(ctx: BuildContext, model: bytes) -> StepPrice:
    """A step of the float-layer search: estimated on the first device, and timed briefly on the host."""
    price = StepPrice()
    devices = [d for d in ctx.recipe.device_names if d not in ctx.skipped]
    if devices:
        from edgequant.devices import estimate_latency, load_profile

        with field_context(ctx.recipe_path, ["devices"]):
            profile = load_profile(ctx.device_path(devices[0]))
            est = estimate_latency(ctx.work_file(".search-step", ctx.at_timed_shape(model)), profile,
                                   ctx.recipe.benchmark.threads, ctx.recipe.device_kernels(devices[0]))
        price.device, price.estimated_ms, price.estimate_label = devices[0], est.latency_ms, est.label
        price.instructions_per_invoke = est.instructions_per_invoke
    b = ctx.recipe.benchmark
    if b.enabled and "host" not in ctx.skipped:
        from edgequant.bench.host import benchmark

        timed = ctx.timing_sample()
        stats = benchmark([model], kernels=[b.kernels], threads=[b.threads], runs=20, warmup=3,
                          inputs=timed and timed[0], inputs_description=timed and timed[1])[0].latency
        price.host_median_ms, price.host_std_ms, price.host_runs = stats.median_ms, stats.std_ms, stats.n
    return price


def make_artifact(variant, data: bytes, seconds: float) -> Artifact:
    info = read_tflite(data)
    return Artifact(
        name=variant.name,
        mode=variant.mode,
        file=f"{variant.name}.tflite",
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        inputs=[t.to_dict() for t in info.inputs],
        outputs=[t.to_dict() for t in info.outputs],
        convert_seconds=round(seconds, 3),
    )


def layer_error_reports(errors) -> list[LayerErrorReport]:
    return [LayerErrorReport(**{k: v for k, v in e.to_dict().items() if k != "tensor"}) for e in errors]
