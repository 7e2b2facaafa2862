"""`edgequant build`: the thin orchestrator that runs the stages in order.

    recipe -> source model -> export once -> variants (.tflite bytes)
        -> evaluate -> benchmark (host, simulated devices) -> gates -> artifacts + manifest + report

Each stage is its own module; this one only wires them and owns the staging of
outputs, so that a failed or interrupted build changes nothing on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from edgequant import fault_points
from edgequant.version import __version__
from edgequant.artifacts import MANIFEST, MANIFEST_VERSION
from edgequant.convert import convert_variant
from edgequant.data.sources import class_names, describe
from edgequant.data.stream import InputSpec, iter_batches, iter_samples
from edgequant.convert_worker import ConversionWorker
from edgequant.errors import BuildError, DataError, InputError
from edgequant.evaluate import Evaluation, evaluate, reference_problems
from edgequant.gates import GateResult, accuracy_gates_pass, check_gates
from edgequant.interrupts import CheckingProgress, stop_on_signals, temporary_dir
from edgequant.output_dir import Staging
from edgequant.parallel import ModelRun, default_jobs, run_here
from edgequant.progress import NullProgress, Progress
from edgequant.recipe.check import check_recipe
from edgequant.recipe.loader import dotted_path, load_recipe, locate, recipe_hash
from edgequant.recipe.schema import CALIBRATED_MODES, LOWBIT_MODES, TRAINED_MODES, Float32Variant, Recipe
from edgequant.report.render import plural, render_report
from edgequant.report.schema import (
    EvaluationReport,
    GateReport,
    Int8FixesReport,
    LatencyReport,
    LayerErrorReport,
    MixedPrecisionReport,
    NotBuiltReport,
    Report,
    StepPrice,
    VariantReport,
)
from edgequant.shared_work import SharedWork
from edgequant.source_model import ExportedModel, export_model
from edgequant.tflite_file import read_tflite
from edgequant.trust import trusted

INTERNAL_REFERENCE = ".float32-reference"  # variant names cannot start with '.': it never clashes with one
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
class _Built:
    variant: Any
    data: bytes
    artifact: Artifact
    layer_errors: list = field(default_factory=list)
    mixed: MixedPrecisionReport | None = None
    fixes: Int8FixesReport | None = None


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
    `ray`: run the emulated device runs as tasks on this Ray cluster (an address, or "auto"); edgequant.ray_backend.
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
        from edgequant.registry import check_registry

        check_registry(registry or recipe.registry)
    calibrated = recipe.calibration is not None and any(v.mode in CALIBRATED_MODES for v in variants)

    with stop_on_signals(), temporary_dir("build") as work, Staging(out, wait=wait) as staging, \
            ExitStack() as stack:
        # the conversions' child process: the build's own, started now (its import overlaps the export), or
        # the one the builds of this call share
        worker = shared.worker if shared is not None else stack.enter_context(ConversionWorker())
        if calibrated and declared is not None:  # the model file declares its input: check before the export
            with _field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, declared, progress)
        with progress.task(f"export {recipe.model.path.name}") as task:
            if shared is None:
                exported = export_model(recipe.model.path, Path(work), recipe.model.input_shape, trust_code=trust_code,
                                        custom_objects=recipe.model.custom_objects)
            else:
                exported, reused = shared.export(recipe.model.path, recipe.model.input_shape, trust_code=trust_code,
                                                 custom_objects=recipe.model.custom_objects)
                if reused:
                    progress.log(f"{recipe.name}: {recipe.model.path.name}: the export of an earlier recipe, reused")
            task.advance()
        fault_points.reached("exported")
        if calibrated and declared is None:
            with _field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, exported.data_inputs, progress)

        stages = _Stages(recipe, recipe_path, exported, progress, work, _reference_name(variants),
                         devices=devices, host_benchmark=host_benchmark, jobs=jobs or default_jobs(), ray=ray,
                         split_evaluation=any(_is_auto(v) for v in variants), worker=worker)
        # Conversions stay one after another: see edgequant.parallel for what running them side by side measured.
        built, not_built = [], []
        for v in variants:
            try:
                built.append(stages.build_auto_float(v) if _is_auto(v) else stages.build_variant(v))
            except BuildError as exc:  # this variant cannot be built (the converter refused it or crashed): the others ship
                not_built.append(NotBuiltReport(name=v.name, mode=v.mode, reason=_not_built_reason(exc, v)))
                progress.log(f"{v.name}: not built: {not_built[-1].reason}")
        if not built:
            raise BuildError("; ".join(f"variant {n.name!r}: not built: {n.reason}" for n in not_built))

        onnx_out = stages.build_onnx([b.variant for b in built if "onnx" in recipe.variant_formats(b.variant)])
        evaluations = stages.evaluate_all(built, onnx_out)
        latencies, explanations, device_notes = stages.measure_latency(built)
        report = _assemble_report(
            recipe, recipe_path, exported, built, evaluations, latencies, explanations, device_notes, stages
        )
        report = report.model_copy(update=dict(stages.onnx_report(onnx_out, evaluations), not_built=not_built))
        fault_points.reached("converted")
        for b in built:
            staging.path(b.artifact.file).write_bytes(b.data)
        for a in onnx_out:
            staging.path(a.file).write_bytes(a.data)
        _write_manifest(recipe, recipe_path, exported, built, staging, [a.manifest_entry() for a in onnx_out],
                        stages.calibration_used, not_built)
        render_report(report, staging.dir)
        staging.commit()
    result = BuildResult(recipe=recipe, output_dir=out, artifacts=[b.artifact for b in built], report=report)
    if registry or recipe.registry:
        from edgequant.registry import log_build  # needs the mlflow extra: imported only when asked

        result.registered = log_build(result, registry or recipe.registry)
    return result


class _Stages:
    """The per-build stages, sharing the export, the reference model and the evaluation data."""

    def __init__(
        self, recipe: Recipe, recipe_path: str | None, exported: ExportedModel, progress: Progress, work_dir: Path,
        reference: str,
        *, devices: bool = True, host_benchmark: bool = True, jobs: int = 1, ray: str | None = None,
        split_evaluation: bool = False, worker: ConversionWorker | None = None,
    ):
        self.worker = worker
        self.recipe, self.recipe_path, self.exported, self.progress = recipe, recipe_path, exported, progress
        self.jobs, self.ray = jobs, ray
        self.work_dir = work_dir
        self.reference = reference
        self.parity: dict[str, list[dict]] = {}
        self.calibration_used: dict[str, int] = {}  # variant name: calibration samples its conversion read
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.eval_spec = recipe.evaluation_data()
        self._reference: bytes | None = None
        # {"host" or a device: why it is not measured}: what the user skipped for a quick build.
        self.skipped: dict[str, str] = {}
        if not host_benchmark and recipe.benchmark.enabled:
            self.skipped["host"] = "skipped with --no-bench"
        if not devices:
            self.skipped.update({d: "skipped with --no-devices" for d in recipe.device_names})
        # With float_layers: auto, the search chooses on a selection slice of the evaluation data, and every
        # figure the report states comes from the other samples.
        self.reported_samples = None
        if split_evaluation and self.eval_spec is not None:
            from edgequant.mixed_precision import in_selection

            self.reported_samples = lambda index: not in_selection(index)

    # --- conversion -----------------------------------------------------------------------------

    def reference_model(self) -> bytes:
        """The float32 model every variant is compared with (converted once, even if not a variant)."""
        if self._reference is None:
            with self.progress.task("convert float32 reference") as task:
                self._reference = self._convert(self.exported.saved_model_dir, Float32Variant(name="reference"))
                task.advance()
        return self._reference

    def _convert(self, saved_model: Path, variant, representative=None) -> bytes:
        """One conversion, in the build's child process (edgequant.convert_worker) when it has one."""
        if self.worker is None:
            return convert_variant(saved_model, variant, representative)
        return self.worker.convert(saved_model, variant, representative)

    def _representative(self, variant, task=None):
        count = _calibration_count(self.recipe, variant)

        def samples():
            for used, sample in enumerate(
                    iter_samples(self.recipe.calibration, self.exported.data_inputs, limit=count, role="calibration"), 1):
                if task is not None:
                    task.advance()
                # what the manifest states: the samples read, not the count asked for (the file may hold fewer)
                self.calibration_used[variant.name] = max(self.calibration_used.get(variant.name, 0), used)
                yield sample.x

        return samples

    def _analysis(self, variant, fixed=None):
        """The per-layer analysis of `variant`, on the model its int8 fixes made when `fixed` is given."""
        from edgequant.layer_error import DEBUG_SECONDS, QuantizationAnalysis

        spec = self.eval_spec or self.recipe.calibration
        samples = iter_samples(spec, self.exported.data_inputs, role="analysis")
        if self.reported_samples is not None:  # the layer errors choose candidates: keep them off reported data
            samples = (s for s in samples if not self.reported_samples(s.index))
        debug = [s.x for s in islice(samples, DEBUG_SAMPLES)]
        saved_model = fixed.saved_model_dir if fixed else self.exported.saved_model_for(variant.mode)
        edit = fixed.edit_calibration if fixed else None
        started = time.perf_counter()
        with self.progress.task(f"analyse layers of {variant.name}{' (fixed)' if fixed else ''}") as task:
            analysis = QuantizationAnalysis(saved_model, variant, self._representative(variant), debug, edit)
            analysis.layer_errors()
            task.advance()
        self.notes.append(
            f"{variant.name}: the per-layer analysis{' of the fixed model' if fixed else ''} took "
            f"{time.perf_counter() - started:.1f} s: a second calibration, then the layers compared on "
            f"{plural(analysis.debug_samples_used, 'sample')} (at most {len(debug)}, within about "
            f"{DEBUG_SECONDS:g} s); `analyse_layers: false` skips it"
        )
        if analysis.on_twin:
            self.notes.append(
                f"{variant.name}: the per-layer errors were measured on a twin of the variant with float32 input and "
                f"output (the same int8 quantization inside); the artifact itself has {variant.input_type} input and "
                f"{variant.output_type} output"
            )
        return analysis

    def build_variant(self, variant) -> _Built:
        with self._context(variant):
            started = time.perf_counter()
            layer_errors, mixed, fixed = [], None, None
            if variant.mode == "float32" and self._reference is not None:
                data = self._reference
            elif variant.mode in CALIBRATED_MODES:
                count = _calibration_count(self.recipe, variant)
                calibrating = time.perf_counter()
                with self.progress.task(f"calibrate + convert {variant.name} ({variant.mode})", total=count) as task:
                    data = self._convert(self.exported.saved_model_for(variant.mode), variant,
                                         self._representative(variant, task))
                fixed = self._fix_int8(variant, data) if variant.mode == "int8" and variant.int8_fixes else None
                data = fixed.data if fixed else data
                if variant.mode == "int8" and (variant.analyse_layers or variant.mixed_precision) \
                        and not self._analysis_skipped(variant, time.perf_counter() - calibrating):
                    analysis = self._analysis(variant)
                    layer_errors = analysis.layer_errors()
                    if fixed:
                        fixed.report.layer_errors_plain = _layer_error_reports(layer_errors)
                        if fixed.report.kept:
                            analysis = self._analysis(variant, fixed)
                            layer_errors = analysis.layer_errors()
                    if variant.mixed_precision:
                        data = analysis.quantized_model(variant.float_layers, variant.float_ops)
                        mixed = MixedPrecisionReport(
                            float_layers=list(variant.float_layers), float_ops=list(variant.float_ops), automatic=False
                        )
            elif variant.mode == "qat":
                from edgequant.qat import build_qat_variant  # tfmot changes what tf.keras means: import on demand

                data = build_qat_variant(self.recipe, variant, self.exported, self.progress)
            elif variant.mode in LOWBIT_MODES:
                from edgequant.lowbit import build_lowbit_variant  # the lowbit extra: imported only for these modes

                data, packed = build_lowbit_variant(self.recipe, variant, self.exported, self.progress,
                                                    self.reference_model)
                self.notes.append(f"{variant.name}: weights read back from the file: {packed.describe()}; per-layer "
                                  "error not measured (TF's QuantizationDebugger analyses int8 conversions only)")
            else:
                with self.progress.task(f"convert {variant.name} ({variant.mode})") as task:
                    data = self._convert(self.exported.saved_model_dir, variant)
                    task.advance()
            if variant.mode == "float32" and self._reference is None:
                self._reference = data
            return _Built(variant, data, _artifact(variant, data, time.perf_counter() - started), layer_errors, mixed,
                          fixed.report if fixed else None)

    def _analysis_skipped(self, variant, calibration_seconds: float) -> bool:
        """Whether the default per-layer analysis is left out because it would calibrate a slow model again; it
        runs whenever the recipe asks for it (analyse_layers: true, float layers)."""
        if variant.mixed_precision or "analyse_layers" in variant.model_fields_set \
                or calibration_seconds <= ANALYSIS_CALIBRATION_SECONDS:
            return False
        self.notes.append(
            f"{variant.name}: no per-layer analysis: calibrating took {calibration_seconds:.0f} s, and the analysis "
            f"calibrates again (by default it is left out when that takes over {ANALYSIS_CALIBRATION_SECONDS:g} s); "
            "`analyse_layers: true` runs it"
        )
        return True

    def _fix_int8(self, variant, plain: bytes):
        from edgequant.int8_fixes import build_fixed_int8, requested

        if len(self.exported.inputs) > 1:
            self.notes.append(f"{variant.name}: int8 fixes ({', '.join(requested(variant))}) not applied: they feed "
                              f"a model with one input, and this one has {len(self.exported.inputs)}; the artifact "
                              "is plain int8")
            return None
        with self.progress.task(f"int8 fixes for {variant.name}: {', '.join(requested(variant))}") as task:
            fixed = build_fixed_int8(self.exported, variant, self._representative(variant), plain=plain,
                                     reference=self.reference_model(), work_dir=self.work_dir)
            task.advance()
        return fixed

    def build_auto_float(self, variant) -> _Built:
        from edgequant.mixed_precision import (
            SELECTION_DESCRIPTION,
            SELECTION_SAMPLES,
            ReferenceRunner,
            ScoredRunner,
            in_selection,
            search_float_layers,
        )

        with self._context(variant):
            started = time.perf_counter()
            fixed = None
            if variant.int8_fixes:  # all-integer fixes first: the search starts from the fixed model
                plain = self._convert(self.exported.saved_model_for(variant.mode), variant, self._representative(variant))
                fixed = self._fix_int8(variant, plain)
            analysis = self._analysis(variant, fixed if fixed and fixed.report.kept else None)

            def judge(candidate: bytes):
                reference = ReferenceRunner(self.reference_model())
                scored = ScoredRunner(candidate, reference)  # each sample's fidelity, for the search's sign test
                results = self._evaluate({"candidate": scored, self.reference: reference},
                                         limit=2 * SELECTION_SAMPLES, keep=in_selection)
                passed = accuracy_gates_pass(variant.gates, results["candidate"], results[self.reference])
                return _evaluation_report(results["candidate"], results[self.reference]), passed, scored.sample_scores()

            def search(analysis):
                return search_float_layers(analysis, judge=judge, price=self._step_price,
                                           max_layers=variant.max_float_layers, float_ops=list(variant.float_ops),
                                           progress=self.progress, label=variant.name)

            data, mixed = search(analysis)
            if fixed and fixed.report.kept and not mixed.searched_to_pass:
                # Fixes that move the weights (adaround, bias correction) stay in a layer kept in float, so
                # keeping it in float no longer undoes its rounding: search from plain int8 as well.
                plain_analysis = self._analysis(variant)
                plain_data, plain_mixed = search(plain_analysis)
                if plain_mixed.searched_to_pass:
                    data, mixed, analysis = plain_data, plain_mixed, plain_analysis
                    fixed.report.kept = False
                    fixed.report.decided_on += ("; not used: float_layers: auto passed its gates only when "
                                                "searching from plain int8")
            mixed.selection_data = f"{SELECTION_DESCRIPTION} ({mixed.steps[0].evaluation.samples} samples)"
            if not mixed.searched_to_pass:
                self.progress.log(f"{variant.name}: float_layers: auto: {mixed.outcome}")
            seconds = time.perf_counter() - started
            return _Built(variant, data, _artifact(variant, data, seconds), analysis.layer_errors(), mixed,
                          fixed.report if fixed else None)

    @contextmanager
    def _context(self, variant):
        with _field_context(self.recipe_path, ["variants", self.recipe.variants.index(variant)]):
            yield

    # --- evaluation -----------------------------------------------------------------------------

    def _evaluate(self, models: dict[str, bytes], on_batch=None, limit: int | None = None,
                  keep=None) -> dict[str, Evaluation]:
        """Every model on the evaluation data: the samples `keep` accepts, by default the reported ones."""
        spec = self.eval_spec
        batches = iter_batches(spec, self.exported.data_inputs, spec.batch_size, limit=limit, role="evaluation",
                               keep=keep or self.reported_samples)
        with _field_context(self.recipe_path, ["evaluation"]):
            return evaluate(
                {self.reference: self.reference_model(), **models}, batches, reference=self.reference, top_k=spec.top_k,
                on_batch=on_batch, outputs=spec.outputs, output_kinds=spec.output_kinds,
            )

    @property
    def reference_size(self) -> int | None:
        """Size of the float32 reference, if this build converted it (as a variant or for comparisons)."""
        return len(self._reference) if self._reference is not None else None

    def evaluate_all(self, built: list[_Built], onnx_out: list | None = None) -> dict[str, Evaluation]:
        """Every variant on the same batches; a variant also written as ONNX is run as `<name>.onnx` too."""
        if self.eval_spec is None:
            return {}
        total = self.eval_spec.samples
        if total is not None and self.reported_samples is not None:
            total = sum(map(self.reported_samples, range(total)))
        models = {b.variant.name: b.data for b in built if b.variant.name != self.reference}
        if onnx_out:
            from edgequant.onnx_export import OnnxRunner

            models.update({a.file: OnnxRunner(a.data, self.recipe.benchmark.threads) for a in onnx_out})
        with self.progress.task(f"evaluate {plural(len(models) + 1, 'model')}", total=total) as task:
            return self._evaluate(models, on_batch=task.advance)

    # --- ONNX ---------------------------------------------------------------------------------------

    def build_onnx(self, variants: list) -> list:
        """The variants that ask for `formats: [..., onnx]`, written as ONNX (int8 calibrated on the same data)."""
        if not variants:
            return []
        from edgequant.onnx_export import build_onnx_variants

        with self.progress.task(f"write {len(variants)} variants as ONNX") as task:
            written, failed = build_onnx_variants(
                variants, self.exported.saved_model_dir, self.work_dir, lambda v: self._representative(v)()
            )
            task.advance()
        self.warnings += failed  # reported; the .tflite artifacts still commit
        return written

    def onnx_report(self, onnx_out: list, evaluations: dict[str, Evaluation]) -> dict:
        """The report's ONNX fields: the ONNX source checked against onnxruntime, and the ONNX artifacts."""
        if self.exported.onnx is None and not onnx_out:
            return {}
        from edgequant.onnx_export import onnx_artifact_reports

        update: dict[str, Any] = {}
        spec = self.eval_spec or self.recipe.calibration
        samples = [s.x for s in iter_samples(spec, self.exported.data_inputs, limit=32, role="onnx")] if spec else []
        if self.exported.onnx is not None and samples:
            from edgequant.onnx_import import check_against_onnxruntime

            check = check_against_onnxruntime(self.exported.onnx, self.reference_model(), samples)
            update["onnx_source_check"] = {**self.exported.onnx.to_dict(), **check}
        if onnx_out:
            reference = evaluations.get(self.reference)
            b = self.recipe.benchmark
            update["onnx_artifacts"] = onnx_artifact_reports(
                onnx_out, {a.file: _evaluation_report(evaluations[a.file], reference)
                           for a in onnx_out if a.file in evaluations},
                samples[0] if samples and b.enabled else None, threads=b.threads, runs=b.runs, warmup=b.warmup,
            )
        return update

    # --- latency --------------------------------------------------------------------------------

    def _step_price(self, model: bytes) -> StepPrice:
        """A step of the float-layer search: estimated on the first device, and timed briefly on the host."""
        price = StepPrice()
        devices = [d for d in self.recipe.device_names if d not in self.skipped]
        if devices:
            from edgequant.devices import estimate_latency, load_profile

            with _field_context(self.recipe_path, ["devices"]):
                profile = load_profile(self._device_path(devices[0]))
                est = estimate_latency(self._work_file(".search-step", self._at_timed_shape(model)), profile,
                                       self.recipe.benchmark.threads, self.recipe.device_kernels(devices[0]))
            price.device, price.estimated_ms, price.estimate_label = devices[0], est.latency_ms, est.label
            price.instructions_per_invoke = est.instructions_per_invoke
        b = self.recipe.benchmark
        if b.enabled and "host" not in self.skipped:
            from edgequant.bench.host import benchmark

            timed = self._timing_sample()
            stats = benchmark([model], kernels=[b.kernels], threads=[b.threads], runs=20, warmup=3,
                              inputs=timed and timed[0], inputs_description=timed and timed[1])[0].latency
            price.host_median_ms, price.host_std_ms, price.host_runs = stats.median_ms, stats.std_ms, stats.n
        return price

    def measure_latency(self, built: list[_Built]):
        """Host latency of every variant (interleaved), and estimates on the recipe's simulated devices."""
        latencies: dict[str, list[LatencyReport]] = {b.variant.name: [] for b in built}
        explanations: dict[str, dict] = {}
        notes: list[str] = []
        b = self.recipe.benchmark
        if b.enabled and "host" in self.skipped:
            notes.append("host benchmark: skipped with --no-bench; no host latency was measured")
        if b.enabled and "host" not in self.skipped:
            from edgequant.bench.host import benchmark
            from edgequant.bench.speed_explanation import explain_speed

            names = [x.variant.name for x in built]
            models = [x.data for x in built]
            if self.reference not in names:
                names, models = [self.reference, *names], [self.reference_model(), *models]
            timed = self._timing_sample()
            with self.progress.task(f"benchmark {len(models)} models on the host", total=None) as task:
                results = benchmark(models, kernels=[b.kernels], threads=[b.threads], runs=b.runs, warmup=b.warmup,
                                    names=names, inputs=timed and timed[0], inputs_description=timed and timed[1])
                task.advance()
            by_name = dict(zip(names, results))
            ref_ms = by_name[self.reference].latency.median_ms
            for x in built:
                r = by_name[x.variant.name]
                latencies[x.variant.name].append(
                    LatencyReport(
                        device="host", ms=r.latency.median_ms, estimate=False,
                        speedup_vs_reference=ref_ms / r.latency.median_ms if r.latency.median_ms else None,
                        details=r.to_dict(samples=False),
                    )
                )
                explanations[x.variant.name] = explain_speed(  # at the timed shape: a dynamic axis may not load at 1
                    self._at_timed_shape(x.data), name=x.variant.name, results=[by_name[self.reference], r]
                ).to_dict()
        skipped = [d for d in self.recipe.device_names if d in self.skipped]
        if skipped:
            notes.append(f"simulated devices: skipped with --no-devices ({', '.join(skipped)}); no latency estimated")
        elif self.recipe.devices:
            with _field_context(self.recipe_path, ["devices"]):
                notes += self._estimate_on_devices(built, latencies)
        return latencies, explanations, notes

    def _estimate_on_devices(self, built: list[_Built], latencies: dict[str, list[LatencyReport]]) -> list[str]:
        """Estimated latency of every variant on each simulated device, and ARM parity of integer variants.

        Every emulated run is its own piece, run `self.jobs` at a time; the results are assembled in the
        recipe's order, so the report does not depend on which run finished first."""
        from edgequant.devices import estimate_latency, load_profile
        from edgequant.devices.run_cache import cached_parity

        threads = self.recipe.benchmark.threads
        # the files as emulated: at the shape the host timed (a dynamic axis set from the data)
        models = {x.variant.name: self._work_file(x.variant.name, self._at_timed_shape(x.data)) for x in built}
        if self.reference not in models:
            models[self.reference] = self._work_file(INTERNAL_REFERENCE, self._at_timed_shape(self.reference_model()))
        parity_samples = self._parity_inputs()
        integer = [x for x in built if x.variant.mode in ("int8", "qat", *LOWBIT_MODES)]
        runs, keys = [], []
        with ExitStack() as tasks:
            for entry in self.recipe.device_names:
                profile, kernels = load_profile(self._device_path(entry)), self.recipe.device_kernels(entry)
                # One step per emulated run (an estimate, or a parity check), so the bar moves and has an ETA.
                task = tasks.enter_context(self.progress.task(
                    f"emulate on {profile.name} ({profile.core}, {kernels}): latency of {len(built)} models, "
                    f"parity of {len(integer)}", total=len(models) + len(integer)))
                for name, path in models.items():
                    runs.append(ModelRun(estimate_latency, path, (profile, threads, kernels), task))
                    keys.append(("estimate", entry, name))
                for x in integer:
                    parity_inputs = self._in_input_order(x.data, parity_samples)
                    runs.append(ModelRun(cached_parity, models[x.variant.name], (profile, parity_inputs or None), task))
                    keys.append(("parity", entry, x.variant.name))
            results = dict(zip(keys, self._emulate(runs)))
        notes = []
        for entry in self.recipe.device_names:
            for x in integer:
                self.parity.setdefault(x.variant.name, []).append(
                    dict(results["parity", entry, x.variant.name], device=entry, model=x.artifact.file))
            reference_est = results["estimate", entry, self.reference]
            for x in built:
                est = results["estimate", entry, x.variant.name]
                latencies[x.variant.name].append(
                    LatencyReport(
                        device=entry, ms=est.latency_ms, estimate=True,
                        calibration_error_percent=est.calibration_error_pct, interval_ms=list(est.interval_ms),
                        speedup_vs_reference=reference_est.latency_ms / est.latency_ms if est.latency_ms else None,
                        details=dict(est.to_dict(layers=False), model=f"{x.variant.name}.tflite"),  # not the temporary copy
                        layers=[layer.to_dict() for layer in est.layers],
                    )
                )
            if not reference_est.calibration_rows:
                notes.append(f"{entry}: no calibration rows of its own: {reference_est.calibration_source}")
        return notes

    def _emulate(self, runs: list[ModelRun]) -> list:
        if self.ray is None:
            return run_here(runs, self.jobs)
        from edgequant.ray_backend import run_on_ray

        return run_on_ray(runs, self.ray)

    def _work_file(self, name: str, data: bytes) -> Path:
        """A model on disk for the tools that take paths (variant names cannot start with '.')."""
        path = self.work_dir / "models" / f"{name}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def _device_path(self, entry: str) -> str:
        """A profile name as is; a YAML path relative to the recipe file."""
        if entry.endswith((".yaml", ".yml")) and self.recipe_path and not Path(entry).is_absolute():
            return str(Path(self.recipe_path).parent / entry)
        return entry

    def _parity_inputs(self):
        """Up to 8 data samples of the timed shape (a dynamic axis can make others differ)."""
        spec = self.eval_spec or self.recipe.calibration
        if spec is None:
            return []
        timed = self._timing_sample()
        shapes = _shapes(timed[0]) if timed else None
        samples = (s.x for s in iter_samples(spec, self.exported.data_inputs, role="parity"))
        return list(islice((x for x in samples if shapes is None or _shapes(_batch_of_one(x)) == shapes), 8))

    def _timing_sample(self):
        """(inputs, description): the first evaluation (else calibration) sample as a batch of one, what the host
        times and the devices emulate, so a dynamic axis takes a real size; None without data."""
        return self._timing

    @cached_property
    def _timing(self):
        for role, spec in (("evaluation", self.eval_spec), ("calibration", self.recipe.calibration)):
            if spec is not None:
                first = next(iter_samples(spec, self.exported.data_inputs, limit=1, role=role))
                return _batch_of_one(first.x), f"real data: the first {role} sample"
        return None

    def _at_timed_shape(self, data: bytes) -> bytes:
        """The model with its inputs starting at the timed shape where that differs from the file's (dynamic axes)."""
        from edgequant.runtime import in_input_order, load_interpreter
        from edgequant.tflite_io import with_input_shapes

        timed = self._timing_sample()
        if timed is None:
            return data
        interp = load_interpreter(data, kernels="builtin", allocate=False)
        arrays = in_input_order(interp, timed[0])
        if all(tuple(int(v) for v in d["shape"]) == a.shape for d, a in zip(interp.get_input_details(), arrays)):
            return data
        return with_input_shapes(data, [a.shape for a in arrays])

    @staticmethod
    def _in_input_order(data: bytes, samples: list) -> list:
        """Samples of a model with several inputs as lists in the model's input order (what parity runs take)."""
        if not samples or not isinstance(samples[0], dict):
            return samples
        from edgequant.runtime import in_input_order, load_interpreter

        interp = load_interpreter(data, kernels="builtin", allocate=False)
        return [in_input_order(interp, s) for s in samples]


def _batch_of_one(x):
    return {k: v[None] for k, v in x.items()} if isinstance(x, dict) else x[None]


def _shapes(x) -> tuple:
    return tuple(v.shape for v in x.values()) if isinstance(x, dict) else x.shape


def _not_built_reason(exc: BuildError, variant) -> str:
    """The one line a report gives for a variant that could not be built: the error without the variant's label."""
    reason = getattr(exc, "reason", None) or str(exc)
    label = f"variant {variant.name!r} ({variant.mode}): "
    return reason.removeprefix(label).removeprefix(f"variant {variant.name!r}: ")


def _reference_name(variants: list) -> str:
    """The float32 model the others are compared with: the recipe's float32 variant itself, else an internal one."""
    return next((v.name for v in variants if v.mode == "float32"), INTERNAL_REFERENCE)


def _artifact(variant, data: bytes, seconds: float) -> Artifact:
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


def _layer_error_reports(errors) -> list[LayerErrorReport]:
    return [LayerErrorReport(**{k: v for k, v in e.to_dict().items() if k != "tensor"}) for e in errors]


def _evaluation_report(e: Evaluation, reference: Evaluation | None) -> EvaluationReport:
    drop = None
    if reference is not None and e.top1 is not None and reference.top1 is not None:
        drop = (reference.top1 - e.top1) * 100
    return EvaluationReport(**e.to_dict(), accuracy_drop_points=drop)


def _assemble_report(recipe, recipe_path, exported, built, evaluations, latencies, explanations, notes, stages):
    reference_eval = evaluations.get(stages.reference)
    reference_size = stages.reference_size
    problems = reference_problems(reference_eval) if reference_eval else []
    allowed = bool(problems) and recipe.evaluation is not None and recipe.evaluation.allow_degenerate_reference
    variants, failed = [], []
    for b in built:
        name = b.variant.name
        evaluation = evaluations.get(name)
        lat = latencies.get(name, [])
        gates: list[GateResult] = []
        if b.variant.gates is not None:
            gates = check_gates(
                name, b.variant.gates, size_bytes=b.artifact.size_bytes, evaluation=evaluation,
                reference=reference_eval, latency_ms={x.device: x.ms for x in lat},
                estimated_devices=frozenset(x.device for x in lat if x.estimate), skipped_devices=stages.skipped,
                reference_problems=[] if allowed else problems,
            )
        failed += [g.describe() for g in gates if not g.passed]
        variants.append(
            VariantReport(
                **{k: v for k, v in asdict(b.artifact).items()},
                size_vs_reference=b.artifact.size_bytes / reference_size if reference_size else None,
                evaluation=_evaluation_report(evaluation, reference_eval) if evaluation else None,
                latency=lat,
                gates=[GateReport(**{k: v for k, v in g.to_dict().items() if k != "variant"}) for g in gates],
                layer_errors=_layer_error_reports(b.layer_errors),
                mixed_precision=b.mixed,
                int8_fixes=b.fixes,
                speed_explanation=explanations.get(name),
                arm_parity=stages.parity.get(name, []),
            )
        )
    eval_spec = recipe.evaluation_data()
    evaluation_data = None
    if evaluations:
        evaluation_data = f"{describe(eval_spec.source)}, {next(iter(evaluations.values())).samples} samples"
        if stages.reported_samples is not None:
            from edgequant.mixed_precision import SELECTION_DESCRIPTION

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
        reference=stages.reference,
        reference_problems=problems,
        evaluation_data=evaluation_data,
        host=host,
        variants=variants,
        passed=not failed,
        failed_gates=failed,
        warnings=_reference_warnings(problems, allowed) + stages.warnings,
        notes=stages.notes + notes,
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


@contextmanager
def _field_context(recipe_path: str | None, loc: list):
    """Prefix data errors with the recipe file, line and field they come from."""
    try:
        yield
    except DataError as exc:
        if str(exc).startswith(f"{recipe_path}:"):
            raise
        where = f"{locate(recipe_path, loc)}: " if recipe_path else ""
        raise DataError(f"{where}{dotted_path(loc)}: {exc}") from None


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
    limit = max(_calibration_count(recipe, v) or 0 for v in recipe.variants if v.mode in CALIBRATED_MODES) or None
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


def _calibration_count(recipe: Recipe, variant) -> int | None:
    return getattr(variant, "calibration_samples", None) or recipe.calibration.samples


def _write_manifest(
    recipe, recipe_path, exported, built: list[_Built], staging: Staging, onnx: list[dict],
    calibration_used: dict[str, int] | None = None, not_built: list | None = None,
) -> None:
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    build = {"edgequant_version": __version__, "tensorflow_version": _tf_version()}
    recipe_info = {"name": recipe.name, "path": recipe_path, "sha256": recipe_hash(recipe)}
    source = {"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256}
    entries = [
        dict(b.artifact.manifest_entry(), provenance={
            "built": created, **build, "recipe": recipe_info, "source_model": source,
            **_data_provenance(recipe, b.variant, (calibration_used or {}).get(b.variant.name)),
        })
        for b in built
    ]
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": created,
        **build,
        "recipe": recipe_info,  # of the build that wrote this manifest; each artifact names its own
        "source_model": source,
        # a variant that could not be built is not replaced by the file an earlier build made of it
        "artifacts": staging.carry_over(entries, dropped={n.name for n in not_built or []}),
    }
    if not_built:
        manifest["not_built"] = [n.model_dump() for n in not_built]
    if exported.onnx is not None:
        manifest["source_model"]["onnx"] = exported.onnx.to_dict()
    if onnx:
        manifest["onnx_artifacts"] = onnx
    staging.path(MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _data_provenance(recipe: Recipe, variant, calibration_used: int | None = None) -> dict[str, Any]:
    """The data an artifact expects (preprocessing, class names) and the data it was calibrated or trained on
    (`calibration_used`: the samples its conversion read, which the file may make fewer than asked for)."""
    data = recipe.evaluation_data() or recipe.calibration
    calibration = None
    if variant.mode in CALIBRATED_MODES and recipe.calibration is not None:
        count = calibration_used or _calibration_count(recipe, variant)
        calibration = f"{describe(recipe.calibration.source)}, {count or 'all'} samples"
    elif variant.mode in TRAINED_MODES and variant.epochs > 0:
        training = variant.training or recipe.calibration
        calibration = f"{describe(training.source)}, {variant.epochs} epoch(s) of QAT"
    return {
        "preprocess": data.preprocess.model_dump(mode="json") if data else None,
        "labels": (recipe.evaluation.class_names or class_names(recipe.evaluation.source)) if recipe.evaluation else None,
        "calibration": calibration,
    }


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
