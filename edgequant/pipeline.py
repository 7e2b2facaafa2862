"""`edgequant build`: the thin orchestrator that runs the stages in order.

    recipe -> source model -> export once -> variants (.tflite bytes)
        -> evaluate -> benchmark (host, simulated devices) -> gates -> artifacts + manifest + report

Each stage is its own module; this one only wires them and owns the staging of
outputs, so that a failed or interrupted build changes nothing on disk.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from edgequant import __version__
from edgequant.artifacts import MANIFEST, MANIFEST_VERSION, Staging, merge_artifacts, read_manifest
from edgequant.convert import convert_variant
from edgequant.data.sources import class_names, describe
from edgequant.data.stream import iter_batches, iter_samples
from edgequant.errors import DataError, InputError
from edgequant.evaluate import Evaluation, evaluate
from edgequant.gates import GateResult, accuracy_gates_pass, check_gates
from edgequant.progress import NullProgress, Progress
from edgequant.recipe.loader import dotted_path, load_recipe, locate, recipe_hash
from edgequant.recipe.schema import CALIBRATED_MODES, Float32Variant, Recipe
from edgequant.report.render import render_report
from edgequant.report.schema import (
    EvaluationReport,
    GateReport,
    Int8FixesReport,
    LatencyReport,
    LayerErrorReport,
    MixedPrecisionReport,
    Report,
    VariantReport,
)
from edgequant.source_model import ExportedModel, export_model
from edgequant.tflite_file import read_tflite

REFERENCE = "float32"
DEBUG_SAMPLES = 32  # samples the per-layer error analysis compares float and int8 activations on
SENSITIVITY_SAMPLES = 2000  # evaluation samples used to rank layers for the automatic mixed-precision search


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
) -> BuildResult:
    """Build a recipe (a Recipe or the path of a recipe file). Raises EdgequantError on bad input.

    Gate failures do not raise: the result's `passed` is False and its report names them.
    """
    progress = progress or NullProgress()
    recipe_path = None
    if not isinstance(recipe, Recipe):
        recipe_path = str(recipe)
        recipe = load_recipe(recipe)
    variants = _selected(recipe, only)
    out = Path(output_dir) if output_dir is not None else recipe.output_path()

    with tempfile.TemporaryDirectory(prefix="edgequant-") as work, Staging(out) as staging:
        with progress.task(f"export {recipe.model.path.name}") as task:
            exported = export_model(recipe.model.path, Path(work), recipe.model.input_shape)
            task.advance()
        if recipe.calibration is not None and any(v.mode in CALIBRATED_MODES for v in variants):
            with _field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, exported, progress)

        stages = _Stages(recipe, recipe_path, exported, progress, Path(work))
        built = [
            stages.build_auto_float(v) if getattr(v, "float_layers", None) == "auto" else stages.build_variant(v)
            for v in variants
        ]

        evaluations = stages.evaluate_all(built)
        latencies, explanations, device_notes = stages.measure_latency(built)
        report = _assemble_report(
            recipe, recipe_path, exported, built, evaluations, latencies, explanations, device_notes, stages
        )
        for b in built:
            staging.path(b.artifact.file).write_bytes(b.data)
        _write_manifest(recipe, recipe_path, exported, [b.artifact for b in built], out, staging)
        render_report(report, staging.dir)
        staging.commit()
    return BuildResult(recipe=recipe, output_dir=out, artifacts=[b.artifact for b in built], report=report)


class _Stages:
    """The per-build stages, sharing the export, the reference model and the evaluation data."""

    def __init__(
        self, recipe: Recipe, recipe_path: str | None, exported: ExportedModel, progress: Progress, work_dir: Path
    ):
        self.recipe, self.recipe_path, self.exported, self.progress = recipe, recipe_path, exported, progress
        self.work_dir = work_dir
        self.parity: dict[str, list[dict]] = {}
        self.eval_spec = recipe.evaluation_data()
        self._reference: bytes | None = None
        self._reference_eval: Evaluation | None = None

    # --- conversion -----------------------------------------------------------------------------

    def reference_model(self) -> bytes:
        """The float32 model every variant is compared with (converted once, even if not a variant)."""
        if self._reference is None:
            with self.progress.task("convert float32 reference") as task:
                self._reference = convert_variant(self.exported.saved_model_dir, Float32Variant(name=REFERENCE))
                task.advance()
        return self._reference

    def _representative(self, variant, task=None):
        count = _calibration_count(self.recipe, variant)

        def samples():
            for sample in iter_samples(self.recipe.calibration, self.exported.input, limit=count, role="calibration"):
                if task is not None:
                    task.advance()
                yield sample.x

        return samples

    def _analysis(self, variant, fixed=None):
        """The per-layer analysis of `variant`, on the model its int8 fixes made when `fixed` is given."""
        from edgequant.layer_error import QuantizationAnalysis

        spec = self.eval_spec or self.recipe.calibration
        debug = [s.x for s in iter_samples(spec, self.exported.input, limit=DEBUG_SAMPLES, role="analysis")]
        saved_model = fixed.saved_model_dir if fixed else self.exported.saved_model_dir
        edit = fixed.edit_calibration if fixed else None
        with self.progress.task(f"analyse layers of {variant.name}{' (fixed)' if fixed else ''}") as task:
            analysis = QuantizationAnalysis(saved_model, variant, self._representative(variant), debug, edit)
            analysis.layer_errors()
            task.advance()
        return analysis

    def build_variant(self, variant) -> _Built:
        with self._context(variant):
            started = time.perf_counter()
            layer_errors, mixed, fixed = [], None, None
            if variant.mode == "float32" and self._reference is not None:
                data = self._reference
            elif variant.mode in CALIBRATED_MODES:
                count = _calibration_count(self.recipe, variant)
                with self.progress.task(f"calibrate + convert {variant.name} ({variant.mode})", total=count) as task:
                    data = convert_variant(self.exported.saved_model_dir, variant, self._representative(variant, task))
                fixed = self._fix_int8(variant, data) if variant.mode == "int8" and variant.int8_fixes else None
                data = fixed.data if fixed else data
                if variant.mode == "int8" and (variant.analyse_layers or variant.mixed_precision):
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
            else:
                with self.progress.task(f"convert {variant.name} ({variant.mode})") as task:
                    data = convert_variant(self.exported.saved_model_dir, variant)
                    task.advance()
            if variant.mode == "float32" and self._reference is None:
                self._reference = data
            return _Built(variant, data, _artifact(variant, data, time.perf_counter() - started), layer_errors, mixed,
                          fixed.report if fixed else None)

    def _fix_int8(self, variant, plain: bytes):
        from edgequant.int8_fixes import build_fixed_int8, requested

        with self.progress.task(f"int8 fixes for {variant.name}: {', '.join(requested(variant))}") as task:
            fixed = build_fixed_int8(self.exported, variant, self._representative(variant), plain=plain,
                                     reference=self.reference_model(), work_dir=self.work_dir)
            task.advance()
        return fixed

    def build_auto_float(self, variant) -> _Built:
        from edgequant.mixed_precision import search_float_layers

        with self._context(variant):
            started = time.perf_counter()
            fixed = None
            if variant.int8_fixes:  # all-integer fixes first: the search starts from the fixed model
                plain = convert_variant(self.exported.saved_model_dir, variant, self._representative(variant))
                fixed = self._fix_int8(variant, plain)
            analysis = self._analysis(variant, fixed if fixed and fixed.report.kept else None)

            def judge(candidate: bytes, subset: bool):
                limit = SENSITIVITY_SAMPLES if subset else None
                results = self._evaluate({"candidate": candidate}, limit=limit)
                reference = results[REFERENCE] if subset else self.reference_evaluation()
                passed = accuracy_gates_pass(variant.gates, results["candidate"], reference)
                return _evaluation_report(results["candidate"], reference), passed

            data, mixed = search_float_layers(
                analysis,
                judge=judge,
                host_latency=self._quick_latency,
                max_layers=variant.max_float_layers,
                float_ops=list(variant.float_ops),
                progress=self.progress,
                label=variant.name,
            )
            seconds = time.perf_counter() - started
            return _Built(variant, data, _artifact(variant, data, seconds), analysis.layer_errors(), mixed,
                          fixed.report if fixed else None)

    @contextmanager
    def _context(self, variant):
        with _field_context(self.recipe_path, ["variants", self.recipe.variants.index(variant)]):
            yield

    # --- evaluation -----------------------------------------------------------------------------

    def _evaluate(self, models: dict[str, bytes], on_batch=None, limit: int | None = None) -> dict[str, Evaluation]:
        spec = self.eval_spec
        batches = iter_batches(spec, self.exported.input, spec.batch_size, limit=limit, role="evaluation")
        with _field_context(self.recipe_path, ["evaluation"]):
            return evaluate(
                {REFERENCE: self.reference_model(), **models}, batches, reference=REFERENCE, top_k=spec.top_k,
                on_batch=on_batch,
            )

    @property
    def reference_size(self) -> int | None:
        """Size of the float32 reference, if this build converted it (as a variant or for comparisons)."""
        return len(self._reference) if self._reference is not None else None

    def reference_evaluation(self) -> Evaluation:
        if self._reference_eval is None:
            self._reference_eval = self._evaluate({})[REFERENCE]
        return self._reference_eval

    def evaluate_all(self, built: list[_Built]) -> dict[str, Evaluation]:
        if self.eval_spec is None:
            return {}
        total = self.eval_spec.samples
        with self.progress.task(f"evaluate {len(built)} variants", total=total) as task:
            results = self._evaluate({b.variant.name: b.data for b in built if b.variant.name != REFERENCE},
                                     on_batch=task.advance)
        self._reference_eval = results[REFERENCE]
        return results

    # --- latency --------------------------------------------------------------------------------

    def _quick_latency(self, model: bytes) -> float | None:
        if not self.recipe.benchmark.enabled:
            return None
        from edgequant.bench.host import benchmark

        b = self.recipe.benchmark
        return benchmark([model], kernels=[b.kernels], threads=[b.threads], runs=20, warmup=3)[0].latency.median_ms

    def measure_latency(self, built: list[_Built]):
        """Host latency of every variant (interleaved), and estimates on the recipe's simulated devices."""
        latencies: dict[str, list[LatencyReport]] = {b.variant.name: [] for b in built}
        explanations: dict[str, dict] = {}
        notes: list[str] = []
        b = self.recipe.benchmark
        if b.enabled:
            from edgequant.bench.host import benchmark
            from edgequant.bench.speed_explanation import explain_speed

            names = [x.variant.name for x in built]
            models = [x.data for x in built]
            if REFERENCE not in names:
                names, models = [REFERENCE, *names], [self.reference_model(), *models]
            with self.progress.task(f"benchmark {len(models)} models on the host", total=None) as task:
                results = benchmark(models, kernels=[b.kernels], threads=[b.threads], runs=b.runs, warmup=b.warmup,
                                    names=names)
                task.advance()
            by_name = dict(zip(names, results))
            ref_ms = by_name[REFERENCE].latency.median_ms
            for x in built:
                r = by_name[x.variant.name]
                latencies[x.variant.name].append(
                    LatencyReport(
                        device="host", ms=r.latency.median_ms, estimate=False,
                        speedup_vs_reference=ref_ms / r.latency.median_ms if r.latency.median_ms else None,
                        details=r.to_dict(samples=False),
                    )
                )
                explanations[x.variant.name] = explain_speed(
                    x.data, name=x.variant.name, results=[by_name[REFERENCE], r]
                ).to_dict()
        if self.recipe.devices:
            with _field_context(self.recipe_path, ["devices"]):
                notes += self._estimate_on_devices(built, latencies)
        return latencies, explanations, notes

    def _estimate_on_devices(self, built: list[_Built], latencies: dict[str, list[LatencyReport]]) -> list[str]:
        """Estimated latency of every variant on each simulated device, and ARM parity of integer variants."""
        from edgequant.devices import check_parity, estimate_latency, load_profile

        threads = self.recipe.benchmark.threads
        models = {x.variant.name: self._work_file(x.variant.name, x.data) for x in built}
        reference = models.get(REFERENCE) or self._work_file(".reference", self.reference_model())
        parity_inputs = self._parity_inputs()
        notes = []
        for entry in self.recipe.devices:
            profile = load_profile(self._device_path(entry))
            with self.progress.task(f"estimate on {profile.name} ({profile.core}, emulated)", total=len(built)) as task:
                estimates = {}
                for x in built:
                    estimates[x.variant.name] = estimate_latency(models[x.variant.name], profile, threads=threads)
                    if x.variant.mode in ("int8", "qat"):
                        parity = check_parity(models[x.variant.name], profile, parity_inputs or None)
                        self.parity.setdefault(x.variant.name, []).append(dict(parity.to_dict(), device=entry))
                    task.advance()
                reference_est = estimates.get(REFERENCE) or estimate_latency(reference, profile, threads=threads)
            for name, est in estimates.items():
                latencies[name].append(
                    LatencyReport(
                        device=entry, ms=est.latency_ms, estimate=True,
                        calibration_error_percent=est.calibration_error_pct,
                        speedup_vs_reference=reference_est.latency_ms / est.latency_ms if est.latency_ms else None,
                        details=est.to_dict(),
                    )
                )
            if reference_est.calibration_error_pct is None:
                notes.append(f"{entry}: estimates have no measured error ({reference_est.calibration}): "
                             f"{reference_est.calibration_source}")
        return notes

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
        spec = self.eval_spec or self.recipe.calibration
        if spec is None:
            return []
        return [s.x for s in islice(iter_samples(spec, self.exported.input, role="parity"), 8)]


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
    reference_eval = evaluations.get(REFERENCE)
    reference_size = stages.reference_size
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
                estimated_devices=frozenset(x.device for x in lat if x.estimate),
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
    host: dict[str, Any] = {}
    if recipe.benchmark.enabled:
        from edgequant.bench.cpu_features import read_host_features

        host = read_host_features().to_dict()
    return Report(
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        edgequant_version=__version__,
        recipe={"name": recipe.name, "path": recipe_path, "sha256": recipe_hash(recipe)},
        source_model={"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256},
        reference=REFERENCE,
        evaluation_data=(
            f"{describe(eval_spec.source)}, {next(iter(evaluations.values())).samples} samples" if evaluations else None
        ),
        host=host,
        variants=variants,
        passed=not failed,
        failed_gates=failed,
        notes=notes,
    )


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


def _selected(recipe: Recipe, only: list[str] | None) -> list:
    if not only:
        return list(recipe.variants)
    names = [v.name for v in recipe.variants]
    unknown = [n for n in only if n not in names]
    if unknown:
        raise InputError(f"--variant {unknown[0]!r}: the recipe has no such variant (it has {', '.join(names)})")
    return [v for v in recipe.variants if v.name in only]


def _check_calibration(recipe: Recipe, exported: ExportedModel, progress: Progress) -> None:
    """Read the calibration stream once before converting, so bad data fails fast and says which sample."""
    limit = max(_calibration_count(recipe, v) or 0 for v in recipe.variants if v.mode in CALIBRATED_MODES) or None
    with progress.task("check calibration data", total=limit) as task:
        for _ in iter_samples(recipe.calibration, exported.input, limit=limit, role="calibration"):
            task.advance()


def _calibration_count(recipe: Recipe, variant) -> int | None:
    return getattr(variant, "calibration_samples", None) or recipe.calibration.samples


def _write_manifest(recipe, recipe_path, exported, artifacts: list[Artifact], out: Path, staging: Staging) -> None:
    data = recipe.evaluation_data() or recipe.calibration
    preprocess = data.preprocess if data else None
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edgequant_version": __version__,
        "tensorflow_version": _tf_version(),
        "recipe": {
            "name": recipe.name,
            "path": recipe_path,
            "sha256": recipe_hash(recipe),
            "preprocess": preprocess.model_dump(mode="json") if preprocess else None,
        },
        "source_model": {"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256},
        "labels": class_names(recipe.evaluation.source) if recipe.evaluation else None,
        "artifacts": merge_artifacts(read_manifest(out), [a.manifest_entry() for a in artifacts], out),
    }
    staging.path(MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
