"""What one build's stages share: the recipe, the export, the float32 reference, the data, and what they found.

A `BuildContext` is made once per build by `edgequant.pipeline` and handed to every stage; the stages read it
and add notes, warnings and ARM parity results to it, which the report then states.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from edgequant.data.stream import iter_samples
from edgequant.errors import DataError
from edgequant.model.source_model import ExportedModel
from edgequant.process.progress import Progress
from edgequant.quantization.convert import convert_variant
from edgequant.quantization.convert_worker import ConversionWorker
from edgequant.recipe.loader import dotted_path, locate
from edgequant.recipe.schema import Float32Variant, Recipe

INTERNAL_REFERENCE = ".float32-reference"  # variant names cannot start with '.': it never clashes with one


class BuildContext:
    """The per-build state the stages share: the export, the reference model and the evaluation data."""

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
            from edgequant.quantization.mixed_precision import in_selection

            self.reported_samples = lambda index: not in_selection(index)

    def reference_model(self) -> bytes:
        """The float32 model every variant is compared with (converted once, even if not a variant)."""
        if self._reference is None:
            with self.progress.task("convert float32 reference") as task:
                self._reference = self.convert(self.exported.saved_model_dir, Float32Variant(name="reference"))
                task.advance()
        return self._reference

    def keep_reference(self, data: bytes) -> None:
        """The recipe's own float32 variant, built: the reference from now on (not converted twice)."""
        if self._reference is None:
            self._reference = data

    @property
    def reference_built(self) -> bytes | None:
        """The float32 reference if this build converted it already, else None."""
        return self._reference

    @property
    def reference_size(self) -> int | None:
        """Size of the float32 reference, if this build converted it (as a variant or for comparisons)."""
        return len(self._reference) if self._reference is not None else None

    def convert(self, saved_model: Path, variant, representative=None) -> bytes:
        """One conversion, in the build's child process (edgequant.quantization.convert_worker) when it has one."""
        if self.worker is None:
            return convert_variant(saved_model, variant, representative)
        return self.worker.convert(saved_model, variant, representative)

    def representative(self, variant, task=None):
        """The calibration samples of `variant` as a generator function (what the converter takes)."""
        count = calibration_count(self.recipe, variant)

        def samples():
            for used, sample in enumerate(
                    iter_samples(self.recipe.calibration, self.exported.data_inputs, limit=count, role="calibration"), 1):
                if task is not None:
                    task.advance()
                # what the manifest states: the samples read, not the count asked for (the file may hold fewer)
                self.calibration_used[variant.name] = max(self.calibration_used.get(variant.name, 0), used)
                yield sample.x

        return samples

    @contextmanager
    def variant_context(self, variant):
        """Errors of the data say which variant of the recipe they come from."""
        with field_context(self.recipe_path, ["variants", self.recipe.variants.index(variant)]):
            yield

    def timing_sample(self):
        """(inputs, description): the first evaluation (else calibration) sample as a batch of one, what the host
        times and the devices emulate, so a dynamic axis takes a real size; None without data."""
        return self._timing

    @cached_property
    def _timing(self):
        for role, spec in (("evaluation", self.eval_spec), ("calibration", self.recipe.calibration)):
            if spec is not None:
                first = next(iter_samples(spec, self.exported.data_inputs, limit=1, role=role))
                return batch_of_one(first.x), f"real data: the first {role} sample"
        return None

    def at_timed_shape(self, data: bytes) -> bytes:
        """The model with its inputs starting at the timed shape where that differs from the file's (dynamic axes)."""
        from edgequant.model.runtime import in_input_order, load_interpreter
        from edgequant.quantization.tflite_io import with_input_shapes

        timed = self.timing_sample()
        if timed is None:
            return data
        interp = load_interpreter(data, kernels="builtin", allocate=False)
        arrays = in_input_order(interp, timed[0])
        if all(tuple(int(v) for v in d["shape"]) == a.shape for d, a in zip(interp.get_input_details(), arrays)):
            return data
        return with_input_shapes(data, [a.shape for a in arrays])

    def work_file(self, name: str, data: bytes) -> Path:
        """A model on disk for the tools that take paths (variant names cannot start with '.')."""
        path = self.work_dir / "models" / f"{name}.tflite"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def device_path(self, entry: str) -> str:
        """A profile name as is; a YAML path relative to the recipe file."""
        if entry.endswith((".yaml", ".yml")) and self.recipe_path and not Path(entry).is_absolute():
            return str(Path(self.recipe_path).parent / entry)
        return entry


def batch_of_one(x):
    return {k: v[None] for k, v in x.items()} if isinstance(x, dict) else x[None]


def calibration_count(recipe: Recipe, variant) -> int | None:
    return getattr(variant, "calibration_samples", None) or recipe.calibration.samples


@contextmanager
def field_context(recipe_path: str | None, loc: list):
    """Prefix data errors with the recipe file, line and field they come from."""
    try:
        yield
    except DataError as exc:
        if str(exc).startswith(f"{recipe_path}:"):
            raise
        where = f"{locate(recipe_path, loc)}: " if recipe_path else ""
        raise DataError(f"{where}{dotted_path(loc)}: {exc}") from None
