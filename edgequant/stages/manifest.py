"""Write the manifest: what the output directory holds, and for each artifact where it came from.

`write_manifest(...)` writes `manifest.json` into the staging directory: each artifact with its provenance
(the versions, the recipe, the source model, the data it expects and was calibrated or trained on), the
variants that could not be built, and the ONNX artifacts.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from typing import Any

from edgequant.data.sources import class_names, describe
from edgequant.output.artifacts import MANIFEST, MANIFEST_VERSION
from edgequant.output.output_dir import Staging
from edgequant.recipe.loader import recipe_hash
from edgequant.recipe.schema import CALIBRATED_MODES, TRAINED_MODES, Recipe
from edgequant.stages.context import calibration_count
from edgequant.version import __version__


def write_manifest(
    recipe, recipe_path, exported, built: list, staging: Staging, onnx: list[dict],
    calibration_used: dict[str, int] | None = None, not_built: list | None = None,
) -> None:
    created = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    build = {"edgequant_version": __version__, "tensorflow_version": _tf_version()}
    recipe_info = {"name": recipe.name, "path": recipe_path, "sha256": recipe_hash(recipe)}
    source = {"path": str(recipe.model.path), "kind": exported.source_kind, "sha256": exported.source_sha256}
    entries = [
        dict(b.artifact.manifest_entry(), provenance={
            "built": created, **build, "recipe": recipe_info, "source_model": source,
            **data_provenance(recipe, b.variant, (calibration_used or {}).get(b.variant.name)),
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


def data_provenance(recipe: Recipe, variant, calibration_used: int | None = None) -> dict[str, Any]:
    """The data an artifact expects (preprocessing, class names) and the data it was calibrated or trained on
    (`calibration_used`: the samples its conversion read, which the file may make fewer than asked for)."""
    data = recipe.evaluation_data() or recipe.calibration
    calibration = None
    if variant.mode in CALIBRATED_MODES and recipe.calibration is not None:
        count = calibration_used or calibration_count(recipe, variant)
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
    # what the installed distribution says: this process may not have imported TensorFlow (a child process
    # exports and converts), and importing it for its version would cost seconds
    try:
        return importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:  # installed under another name (tensorflow-cpu, tf-nightly)
        import tensorflow as tf

        return tf.__version__
