"""The recipe checked against the files it names, before any work, without running any code of the recipe's.

`load_recipe` checks what the recipe says; this checks what it can know from its files:
code it would run without the opt-in, device profiles, the output directory, the model's
declared input, and the first sample of every data section (readable, not empty, the
model's shape, labelled where a gate or QAT needs labels). `edgequant recipe check` and
`edgequant build` run the same checks, so the build refuses nothing that the check passed
for a reason these files could tell.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from edgequant.data.sources import describe
from edgequant.data.stream import InputSpec, iter_samples
from edgequant.errors import InputError, RecipeError
from edgequant.model.source_model import declared_input, refuse_unsafe_layers, source_kind
from edgequant.recipe.loader import RecipeErrors, load_recipe, locate, parse_yaml, read_text, sorted_errors
from edgequant.recipe.schema import (
    CALIBRATED_MODES,
    TRAINED_MODES,
    CallableSource,
    DataSpec,
    Location,
    Recipe,
    dotted_path,
)
from edgequant.trust import trusted as trust_granted
from edgequant.trust import untrusted

_NAME_MAX = 255  # bytes in one file name on every common file system


def check_recipe(
    recipe: Recipe,
    *,
    recipe_path: str | Path | None = None,
    trust_code: bool = False,
    output_dir: Path | None = None,
) -> InputSpec | None:
    """Raise RecipeErrors with every problem found; return the model's declared input (None: unknown before export)."""
    problems: list[tuple[Location, str]] = []
    trusted = trust_granted(trust_code)
    base = Path(recipe_path).parent if recipe_path else Path.cwd()
    model_input = _check_model(recipe, trusted, problems)
    for j, entry in enumerate(recipe.device_names):
        problems += _problem(["devices", j], _check_device, entry, base)
    problems += _problem(["output_dir"], _check_output_dir, output_dir or recipe.output_path())
    for loc, spec, role, needs_labels in _data_sections(recipe):
        if isinstance(spec.source, CallableSource):  # never run here, trusted or not: its form is checked by the schema
            if not trusted:
                problems.append(([*loc, "source", "type"], str(untrusted(
                    f"a callable data source runs {spec.source.target} from the recipe"))))
            continue
        problems += _problem(loc, _probe, spec, model_input, role, needs_labels)
    if problems:
        root = _yaml_root(recipe_path)
        raise sorted_errors([
            RecipeError(message, where=locate(recipe_path, loc, root) if recipe_path else "", field=dotted_path(loc))
            for loc, message in problems
        ])
    return model_input


def recipe_problems(path: Path, *, trust_code: bool = False) -> list[RecipeError]:
    """Every problem of the recipe file at `path`, sorted by position: the recipe's and its files'."""
    try:
        check_recipe(load_recipe(path), recipe_path=path, trust_code=trust_code)
    except RecipeErrors as exc:
        if exc.recipe is None:
            return exc.errors
        try:
            check_recipe(exc.recipe, recipe_path=path, trust_code=trust_code)
        except RecipeErrors as more:
            return sorted_errors(exc.errors + more.errors).errors
        return exc.errors
    return []


def _problem(loc: Location, check, *args) -> list[tuple[Location, str]]:
    try:
        check(*args)
    except InputError as exc:
        return [(loc, str(exc))]
    return []


def _check_model(recipe: Recipe, trusted: bool, problems: list) -> InputSpec | None:
    path = recipe.model.path
    if recipe.model.custom_objects and not trusted:  # checked, never imported: recipe check runs no user code
        problems.append((["model", "custom_objects"], str(untrusted(
            f"model.custom_objects imports {', '.join(recipe.model.custom_objects)}, which runs that code"))))
    try:
        kind = source_kind(path)
        if kind == "onnx":  # read and validated as the build will (no code runs), but its input is NCHW
            from edgequant.model.onnx_import import onnx_input

            onnx_input(path)
            return None
        if kind != "saved_model" and not trusted:
            refuse_unsafe_layers(path, kind)
        if kind not in ("keras", "h5-keras3"):  # the build loads no Keras 3 model to transform
            from edgequant.int8_fixes import keras3_fixes_refused, transforms_keras3_weights

            problems += [(["variants", i], str(keras3_fixes_refused(v)))
                         for i, v in enumerate(recipe.variants) if transforms_keras3_weights(v)]
    except InputError as exc:
        problems.append((["model", "path"], str(exc)))
        return None
    if kind == "saved_model":
        if recipe.model.input_shape is not None:
            problems.append((["model", "input_shape"], "cannot override a SavedModel's signature; export it again"))
        for i, v in enumerate(recipe.variants):
            if v.mode in TRAINED_MODES and getattr(v, "epochs", 1) > 0:
                problems.append((["variants", i, "mode"], f"variant {v.name!r}: QAT fine-tunes Keras layers, and "
                                 f"{path} is a SavedModel, which has none: use the .keras or .h5 file, or mode int8"))
    try:
        return declared_input(path, recipe.model.input_shape)
    except InputError as exc:
        problems.append((["model", "path"], str(exc)))
        return None


def _check_device(entry: str, base: Path) -> None:
    from edgequant.devices.profiles import load_profile

    if entry.endswith((".yaml", ".yml")) and not Path(entry).is_absolute():
        entry = str(base / entry)
    if not load_profile(entry).emulated:
        raise InputError(f"device {entry!r} is this machine, measured natively: the `benchmark` section times it")


def _check_output_dir(out: Path) -> None:
    from edgequant.output.output_dir import refuse_root

    refuse_root(out)
    too_long = [part for part in out.parts if len(part.encode()) > _NAME_MAX]
    if too_long:
        raise InputError(f"{out}: the name {too_long[0][:40]!r}... is longer than {_NAME_MAX} bytes")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir():
        raise InputError(f"{out}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{out}: cannot write in {existing} (read-only or no permission)")


def _data_sections(recipe: Recipe):
    """(location, data, role, whether labels are needed) of each data section the build reads."""
    modes = {v.mode for v in recipe.variants}
    qat_default = any(v.mode in TRAINED_MODES and getattr(v, "training", None) is None and getattr(v, "epochs", 1) > 0
                      for v in recipe.variants)
    if recipe.calibration is not None and (modes & CALIBRATED_MODES or qat_default):
        yield ["calibration"], recipe.calibration, "calibration", qat_default
    evaluation = recipe.evaluation_data()
    if evaluation is not None:
        gated = any(v.gates and (v.gates.max_accuracy_drop_points is not None
                                 or v.gates.max_accuracy_drop_percent is not None) for v in recipe.variants)
        yield ["evaluation"], evaluation, "evaluation", gated
    for i, v in enumerate(recipe.variants):
        if getattr(v, "training", None) is not None:
            yield ["variants", i, "training"], v.training, "training", True


def _probe(spec: DataSpec, model_input: InputSpec | None, role: str, needs_labels: bool) -> None:
    """Read the first sample as the build will: readable, not empty, the model's shape, labelled if needed."""
    first = next(iter_samples(spec, model_input, limit=1, role=role))
    if needs_labels and first.label is None:
        why = "QAT trains on labels" if role != "evaluation" else "an accuracy gate compares predictions with labels"
        raise InputError(f"{describe(spec.source)} yields samples without labels, and {why}")


def _yaml_root(recipe_path: str | Path | None) -> yaml.Node | None:
    if recipe_path is None:
        return None
    try:
        return parse_yaml(read_text(Path(recipe_path)), Path(recipe_path))[1]
    except (OSError, RecipeError):
        return None
