"""`edgequant build`: the thin orchestrator that runs the stages in order.

    recipe -> source model -> export once -> variants (.tflite bytes)
        -> evaluate -> benchmark -> gates -> artifacts + manifest + report

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
from pathlib import Path
from typing import Any

from edgequant import __version__
from edgequant.artifacts import MANIFEST, MANIFEST_VERSION, Staging, merge_artifacts, read_manifest
from edgequant.convert import convert_variant
from edgequant.data.stream import iter_samples
from edgequant.errors import DataError, InputError
from edgequant.progress import NullProgress, Progress
from edgequant.recipe.loader import dotted_path, load_recipe, locate, recipe_hash
from edgequant.recipe.schema import CALIBRATED_MODES, Recipe
from edgequant.source_model import ExportedModel, export_model
from edgequant.tflite_file import read_tflite


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
class BuildResult:
    recipe: Recipe
    recipe_path: str | None
    recipe_sha256: str
    source: dict[str, Any]
    output_dir: Path
    artifacts: list[Artifact] = field(default_factory=list)
    export_seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return True

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
    """Build a recipe (a Recipe or the path of a recipe file). Raises EdgequantError on bad input."""
    progress = progress or NullProgress()
    recipe_path = None
    if not isinstance(recipe, Recipe):
        recipe_path = str(recipe)
        recipe = load_recipe(recipe)
    variants = _selected(recipe, only)
    out = Path(output_dir) if output_dir is not None else recipe.output_path()

    with tempfile.TemporaryDirectory(prefix="edgequant-") as work, Staging(out) as staging:
        started = time.perf_counter()
        with progress.task(f"export {recipe.model.path.name}") as task:
            exported = export_model(recipe.model.path, Path(work), recipe.model.input_shape)
            task.advance()
        export_seconds = time.perf_counter() - started
        if recipe.calibration is not None and any(v.mode in CALIBRATED_MODES for v in variants):
            with _field_context(recipe_path, ["calibration"]):
                _check_calibration(recipe, exported, progress)

        result = BuildResult(
            recipe=recipe,
            recipe_path=recipe_path,
            recipe_sha256=recipe_hash(recipe),
            source={"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256},
            output_dir=out,
            export_seconds=export_seconds,
        )
        for variant in variants:
            with _field_context(recipe_path, ["variants", recipe.variants.index(variant)]):
                result.artifacts.append(_build_variant(recipe, variant, exported, staging, progress))

        _write_manifest(result, staging)
        staging.commit()
    return result


@contextmanager
def _field_context(recipe_path: str | None, loc: list):
    """Prefix data errors with the recipe file, line and field they come from."""
    try:
        yield
    except DataError as exc:
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


def _build_variant(recipe: Recipe, variant, exported: ExportedModel, staging: Staging, progress: Progress) -> Artifact:
    started = time.perf_counter()
    representative = None
    if variant.mode in CALIBRATED_MODES:
        count = _calibration_count(recipe, variant)
        with progress.task(f"calibrate + convert {variant.name} ({variant.mode})", total=count) as task:

            def representative():
                for sample in iter_samples(recipe.calibration, exported.input, limit=count, role="calibration"):
                    task.advance()
                    yield sample.x

            data = convert_variant(exported.saved_model_dir, variant, representative)
    elif variant.mode == "qat":
        from edgequant.qat import build_qat_variant  # tfmot changes what tf.keras means: import only when needed

        data = build_qat_variant(recipe, variant, exported, progress)
    else:
        with progress.task(f"convert {variant.name} ({variant.mode})") as task:
            data = convert_variant(exported.saved_model_dir, variant)
            task.advance()
    seconds = time.perf_counter() - started

    file_name = f"{variant.name}.tflite"
    staging.path(file_name).write_bytes(data)
    info = read_tflite(data)
    return Artifact(
        name=variant.name,
        mode=variant.mode,
        file=file_name,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
        inputs=[t.to_dict() for t in info.inputs],
        outputs=[t.to_dict() for t in info.outputs],
        convert_seconds=round(seconds, 3),
    )


def _write_manifest(result: BuildResult, staging: Staging) -> None:
    recipe = result.recipe
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "edgequant_version": __version__,
        "tensorflow_version": _tf_version(),
        "recipe": {
            "name": recipe.name,
            "path": result.recipe_path,
            "sha256": result.recipe_sha256,
            "preprocess": recipe.calibration.preprocess.model_dump(mode="json") if recipe.calibration else None,
        },
        "source_model": result.source,
        "artifacts": merge_artifacts(
            read_manifest(result.output_dir), [a.manifest_entry() for a in result.artifacts], result.output_dir
        ),
    }
    staging.path(MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__
