"""The quick path: a Recipe from a model file and a few words, with defaults read from the model and the data.

`edgequant quantize` and `edgequant init` start here. The model says what it takes
(input shape, dtype, and whether it rescales its input itself: a Rescaling layer);
the first sample of the data says what it holds (image size, channels, uint8 pixels).
From both follow the preprocess defaults, each with the reason it was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import get_args

import numpy as np
import yaml
from pydantic import ValidationError

from edgequant.data.sources import iter_raw
from edgequant.errors import DataError, InputError
from edgequant.model.source_model import all_layers, load_keras_model, saved_model_inputs, source_kind, tensor_names
from edgequant.recipe.defaults import CALIBRATION_SAMPLES
from edgequant.recipe.loader import _default_name
from edgequant.recipe.schema import (
    CALIBRATED_MODES,
    MODES,
    TRAINED_MODES,
    DataSpec,
    ImageFolderSource,
    IntIO,
    Preprocess,
    Recipe,
)
from edgequant.recipe.writer import recipe_yaml

RECIPE_FILE = "recipe.yaml"
INT8_IO_TYPES = get_args(IntIO)  # what an int8 variant's input_type and output_type accept
# float32 is always built, as the reference; the trained modes need labelled data and epochs
QUICK_MODES = tuple(m for m in MODES if m != "float32" and m not in TRAINED_MODES)
# Preprocessing layers whose presence means the model normalises its own input.
RESCALING_LAYERS = frozenset({"Rescaling"})
NORMALIZATION_LAYERS = frozenset({"Normalization"})


@dataclass(frozen=True)
class ModelFacts:
    """What a model file says about its input."""

    path: Path
    kind: str
    input_shape: tuple[int, ...]  # without the batch dimension; -1 where any size is accepted
    dtype: str
    preprocessing_layers: tuple[str, ...] = ()  # e.g. "Rescaling(scale=0.00392, offset=0)"
    rescales: bool = False
    normalizes: bool = False
    input_names: tuple[str, ...] = ()  # a model with several inputs: their names (input_shape is the first's)

    @property
    def image(self) -> tuple[int, int, int] | None:
        """(height, width, channels) of an NHWC image input with fixed size, else None."""
        shape = self.input_shape
        if len(shape) == 3 and all(d > 0 for d in shape) and shape[-1] in (1, 3, 4):
            return shape  # type: ignore[return-value]
        return None

    def describe(self) -> str:
        dims = "x".join("?" if d < 0 else str(d) for d in self.input_shape)
        layers = f"; preprocessing layers: {', '.join(self.preprocessing_layers)}" if self.preprocessing_layers else ""
        if self.input_names:
            return f"{len(self.input_names)} inputs ({', '.join(self.input_names)}); the first {dims} {self.dtype}{layers}"
        return f"input {dims} {self.dtype}{layers}"


def read_model_facts(path: str | Path, *, custom_objects: list[str] = (), trust_code: bool = False) -> ModelFacts:
    """Load the model once and read its input and any preprocessing layers it contains."""
    path = Path(path)
    kind = source_kind(path)
    if kind == "saved_model":
        specs = saved_model_inputs(path)
        names = tuple(s.name for s in specs) if len(specs) > 1 else ()
        return ModelFacts(path, kind, tuple(specs[0].shape), specs[0].dtype, input_names=names)
    model = load_keras_model(path, kind, custom_objects=custom_objects, trust_code=trust_code)
    names = tuple(tensor_names(model.inputs)) if len(model.inputs) > 1 else ()
    tensor = model.inputs[0]
    shape = tuple(-1 if d is None else int(d) for d in tensor.shape[1:])
    dtype = getattr(tensor.dtype, "name", str(tensor.dtype))
    found = [layer for layer in all_layers(model)
             if type(layer).__name__ in RESCALING_LAYERS | NORMALIZATION_LAYERS]
    return ModelFacts(
        path, kind, shape, dtype,
        preprocessing_layers=tuple(_layer_summary(layer) for layer in found),
        rescales=any(type(layer).__name__ in RESCALING_LAYERS for layer in found),
        normalizes=any(type(layer).__name__ in NORMALIZATION_LAYERS for layer in found),
        input_names=names,
    )


def _layer_summary(layer) -> str:
    name = type(layer).__name__
    if name in RESCALING_LAYERS:
        return f"{name}(scale={_short(layer.scale)}, offset={_short(layer.offset)})"
    return name


def _short(value) -> str:
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value)


def parse_input_shape(text: str) -> list[int]:
    """`--input-shape` text, e.g. '224,224,3' or '224x224x3' (without the batch), as sizes."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--input-shape {text!r}: expected positive sizes without the batch, e.g. 224,224,3")
    return [int(p) for p in parts]


def with_input_shape(facts: ModelFacts, shape: list[int]) -> ModelFacts:
    """The facts with the input shape the user fixed, for the data defaults (resize) to follow it."""
    if len(shape) != len(facts.input_shape):
        dims = "x".join("?" if d < 0 else str(d) for d in facts.input_shape)
        raise InputError(f"--input-shape {','.join(map(str, shape))}: the model's input has {len(facts.input_shape)} "
                         f"dimensions without the batch ({dims})")
    return replace(facts, input_shape=tuple(shape))


@dataclass
class DataChoice:
    """A data source with the preprocess chosen for a model, and why each setting was chosen."""

    spec: DataSpec
    reasons: list[str] = field(default_factory=list)


def check_quick_arguments(model: Path, *, calib: str | None = None, evaluation: str | None = None,
                          scale: float | None = None) -> None:
    """What `quantize` and `init` can tell from their arguments alone, said before the model loads (seconds)."""
    import math

    from edgequant.measure.compare import data_spec

    if scale is not None and not math.isfinite(scale):
        raise InputError(f"--scale {scale}: expected a finite number, e.g. 0.00392 (1/255)")
    source_kind(Path(model))  # exists and is a model format
    for option, word in (("--calib", calib), ("--eval", evaluation)):
        if word is not None:
            data_spec(word, option=option)  # the file or folder exists, the words parse


def refuse_overwrite(path: Path, force: bool, *, same_text: str | None = None) -> None:
    """Refuse to replace a file the user may have edited, unless --force (or it already holds `same_text`)."""
    if force or not (path.exists() or path.is_symlink()):
        return
    if same_text is not None and path.is_file() and not path.is_symlink():
        try:
            if path.read_text(encoding="utf-8") == same_text:
                return
        except (OSError, UnicodeDecodeError):
            pass
    raise InputError(f"{path}: already exists (use --force to overwrite it)")


def choose_data(word: str, facts: ModelFacts, *, option: str, default_split: str,
                samples: int | None = None, scale: float | None = None) -> DataChoice:
    """A DataSpec for `word` (fashion-mnist[:split], a .npy/.npz file or an image folder) fitted to the model."""
    from edgequant.measure.compare import data_spec

    if word == "fashion-mnist":
        word = f"fashion-mnist:{default_split}"
    source = data_spec(word, option=option).source
    try:
        first = next(iter(iter_raw(source, facts.input_names or None)))[0]
    except StopIteration:
        raise DataError(f"{option} {word}: holds no samples") from None
    except DataError as exc:
        raise DataError(f"{option} {exc}") from None
    if isinstance(first, dict):  # several inputs: the data is taken as the model takes it
        preprocess, reasons = Preprocess(), [f"no preprocess: the model has {len(first)} inputs "
                                             f"({', '.join(first)}); give each as the model takes it"]
    else:
        preprocess, reasons = default_preprocess(facts, np.asarray(first), images=isinstance(source, ImageFolderSource))
    if scale is not None:
        preprocess = preprocess.model_copy(update={"scale": scale})
        reasons = [r for r in reasons if not r.startswith("scale")] + [f"scale: {scale:g}, as given"]
    return DataChoice(DataSpec(source=source, preprocess=preprocess, samples=samples), reasons)


def default_preprocess(facts: ModelFacts, sample: np.ndarray, *, images: bool) -> tuple[Preprocess, list[str]]:
    """Resize, color and scale that turn `sample` (one raw sample of the data) into what the model takes."""
    settings: dict = {}
    reasons: list[str] = []
    image = facts.image
    if image is not None and sample.ndim == 3:
        height, width, channels = image
        if images or sample.shape[:2] != (height, width):
            settings["resize"] = (height, width)
            reasons.append(f"resize: [{height}, {width}], the model's input size")
        if channels in (1, 3) and (images or sample.shape[2] != channels):
            settings["color"] = "grayscale" if channels == 1 else "rgb"
            reasons.append(f"color: {settings['color']}, the model takes {channels} channel(s)")
    if sample.dtype == np.uint8 and facts.dtype.startswith("float"):
        if facts.rescales:
            reasons.append("no scale: the model's Rescaling layer takes raw 0..255 pixels")
        else:
            settings["scale"] = 1 / 255
            reasons.append("scale: 1/255, uint8 pixels to 0..1 (the model has no Rescaling layer); "
                           "match your training preprocessing")
    if facts.normalizes:
        reasons.append("no mean/std: the model's Normalization layer standardises its input")
    return Preprocess(**settings), reasons


def quick_recipe(
    facts: ModelFacts,
    modes: list[str],
    *,
    output_dir: Path | None = None,
    calibration: DataChoice | None = None,
    evaluation: DataChoice | None = None,
    devices: list[str] = (),
    input_type: str | None = None,
    output_type: str | None = None,
    input_shape: list[int] | None = None,
    custom_objects: list[str] = (),
) -> tuple[Recipe, str]:
    """The recipe `edgequant quantize` builds, and its YAML text for `output_dir/recipe.yaml`
    (default output_dir: build/<model name>).

    `input_type`/`output_type` set the int8 variant's (float32, int8 or uint8; default int8), `input_shape`
    the model's input shape without the batch (model.input_shape). The Recipe is read back from the text,
    so what is built is exactly what the file says.
    """
    unknown = [m for m in modes if m not in QUICK_MODES]
    if unknown:
        raise InputError(f"mode {unknown[0]!r}: choose from {', '.join(QUICK_MODES)}")
    io_types = {f"{side}_type": value for side, value in (("input", input_type), ("output", output_type))
                if value is not None}
    for field_name, value in io_types.items():
        option = f"--{field_name.replace('_', '-')}"
        if value not in INT8_IO_TYPES:
            raise InputError(f"{option} {value}: choose from {', '.join(INT8_IO_TYPES)}")
        if "int8" not in modes:
            raise InputError(f"{option} sets the int8 variant's {field_name.split('_')[0]} type: add --int8")
    uncalibrated = [m for m in modes if m in CALIBRATED_MODES]
    if uncalibrated and calibration is None:
        raise InputError(f"--{uncalibrated[0]} needs --calib DATA: a representative dataset "
                         "(fashion-mnist[:split], a .npy/.npz file or a folder of images)")
    for device in devices:
        _check_device(device)
    name = _default_name(facts.path)
    output_dir = Path(output_dir) if output_dir is not None else Path("build") / name
    data: dict = {
        "name": name,
        "model": {"path": facts.path, **({"input_shape": list(input_shape)} if input_shape else {}),
                  **({"custom_objects": list(custom_objects)} if custom_objects else {})},
        "devices": list(devices),
        "output_dir": output_dir,
        "variants": [{"name": m, "mode": m, **(io_types if m == "int8" else {})}
                     for m in ["float32", *dict.fromkeys(modes)]],
    }
    if calibration is not None:
        data["calibration"] = calibration.spec
    if evaluation is not None:
        same = calibration is not None and evaluation.spec.preprocess == calibration.spec.preprocess
        data["evaluation"] = {"source": evaluation.spec.source, "samples": evaluation.spec.samples,
                              "preprocess": None if same else evaluation.spec.preprocess}
    try:
        draft = Recipe.model_validate(data)
    except ValidationError as exc:
        raise InputError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    recipe_file = Path(output_dir) / RECIPE_FILE
    text = recipe_yaml(draft, recipe_file, header=_header(facts, calibration, evaluation))
    recipe = Recipe.model_validate(yaml.safe_load(text), context={"base_dir": recipe_file.parent.resolve()})
    return recipe, text


def _header(facts: ModelFacts, calibration: DataChoice | None, evaluation: DataChoice | None) -> list[str]:
    lines = ["Written by `edgequant quantize`. Repeat the build with: edgequant build recipe.yaml",
             f"Model: {facts.describe()}."]
    for role, choice in (("calibration", calibration), ("evaluation", evaluation)):
        inherited = role == "evaluation" and calibration is not None and choice is not None \
            and choice.spec.preprocess == calibration.spec.preprocess
        if choice is not None and choice.reasons and not inherited:
            lines.append(f"{role} preprocess: " + "; ".join(choice.reasons) + ".")
    return lines


PLACEHOLDER = "CHANGE-ME"
STARTER_MODES = ("float32", "float16", "dynamic", "int8")


def starter_recipe(
    facts: ModelFacts,
    recipe_file: Path,
    *,
    calibration: DataChoice | None = None,
    evaluation: DataChoice | None = None,
    devices: list[str] = (),
) -> str:
    """A commented starter recipe for the model, as YAML text for `recipe_file`.

    Without calibration data, the calibration path is a placeholder that `recipe check` reports.
    """
    from edgequant.devices.profiles import list_profiles

    for device in devices:
        _check_device(device)
    if calibration is None:
        calibration = _placeholder_calibration(facts, Path(recipe_file).parent)
    data: dict = {
        "name": _default_name(facts.path),
        "model": {"path": facts.path},
        "calibration": calibration.spec,
        "devices": list(devices),
        "variants": [{"name": m, "mode": m} for m in STARTER_MODES],
    }
    if evaluation is not None:
        same = evaluation.spec.preprocess == calibration.spec.preprocess
        data["evaluation"] = {"source": evaluation.spec.source,
                              "preprocess": None if same else evaluation.spec.preprocess}
    recipe = Recipe.model_validate(data)
    placeholder = PLACEHOLDER in str(calibration.spec.source.path)
    choices = [p for p in list_profiles() if p.emulated]
    comments = {
        "model.path": [f"{facts.describe()} (read from the model)"],
        "model.input_shape": [] if all(d > 0 for d in facts.input_shape) else [
            "The model accepts any input size: fix one for conversion, and resize the data to it, e.g.",
            "input_shape: [224, 224, 3]      # and in calibration.preprocess: resize: [224, 224]"],
        "calibration": ["Representative data: int8 measures its value ranges on real samples like those the model "
                        "will see."],
        "calibration.source": (
            [f"{PLACEHOLDER}: point this at a folder of images (or a .npy file) of 100-500 real samples"]
            if placeholder else []
        ),
        "calibration.preprocess": [f"{r}" for r in calibration.reasons],
        "evaluation": [] if evaluation is not None else [
            "Held-out data to compare every variant with float32 (accuracy with labels, agreement without):",
            "evaluation:",
            "  source: {type: images, path: my_test_images, labels: subfolders}   # or {type: npy, path: x.npy, "
            "labels: y.npy}",
        ],
        "devices": [] if devices else [
            "Simulated devices to estimate latency, memory fit and ARM parity on, e.g.:",
            "devices: [rpi4, pixel4]",
            "choosing from (`edgequant devices` shows them all):",
            *[f"  {p.name}: {p.device}, {p.core}" for p in choices],
        ],
        "variants": ["Modes: float32 (the reference), float16, dynamic, int8, int16x8, qat. Add `gates:` to a variant",
                     "to fail the build when it loses too much, e.g. gates: {max_accuracy_drop_points: 1.0}"],
    }
    header = [f"Starter recipe for {facts.path.name}, written by `edgequant init`.",
              "Check it with `edgequant recipe check`, then build it with `edgequant build`."]
    if placeholder:
        header.append(f"Replace the {PLACEHOLDER} calibration path first: `recipe check` reports it until you do.")
    return recipe_yaml(recipe, recipe_file, header=header, comments=comments)


def _placeholder_calibration(facts: ModelFacts, folder: Path) -> DataChoice:
    """A clearly marked calibration source that does not exist, with the preprocess uint8 images would need."""
    if facts.image is None:
        return DataChoice(DataSpec(source={"type": "npy", "path": folder / f"{PLACEHOLDER}-calibration.npy"},
                                   samples=CALIBRATION_SAMPLES))
    preprocess, reasons = default_preprocess(facts, np.zeros((1, 1, 3), np.uint8), images=True)
    return DataChoice(DataSpec(source={"type": "images", "path": folder / f"{PLACEHOLDER}-calibration-images"},
                               preprocess=preprocess, samples=CALIBRATION_SAMPLES), reasons)


def _check_device(device: str) -> None:
    from edgequant.devices import load_profile

    load_profile(device)  # an unknown device fails now, not after the conversions


def build_variant_with_report(
    model, variant, *, calibration=None, evaluation=None, devices=(), input_shape=None, output_dir=None,
):
    """Build `variant` beside its float32 reference through the same pipeline as `edgequant build`.

    `model` is a model file or an in-memory Keras model (saved to a temporary file);
    `calibration` and `evaluation` are DataSpecs or arrays stacked on axis 0 (evaluation
    may be `(samples, labels)`); arrays and iterables are written to temporary .npy files.
    Returns the variant's bytes and the pipeline's BuildResult; its files are kept only with `output_dir`.
    """
    import tempfile

    from edgequant.pipeline import build_recipe
    from edgequant.process.scratch import scratch_prefix

    with tempfile.TemporaryDirectory(prefix=scratch_prefix("quick")) as work:
        work = Path(work)
        recipe = Recipe(
            name="model",
            model={"path": _model_file(model, work), "input_shape": input_shape},
            calibration=_data_file(calibration, work, "calibration") if calibration is not None else None,
            evaluation=_data_file(evaluation, work, "evaluation") if evaluation is not None else None,
            devices=list(devices),
            output_dir=Path(output_dir) if output_dir is not None else work / "out",
            variants=[{"name": "float32", "mode": "float32"}, *([variant] if variant.mode != "float32" else [])],
        )
        result = build_recipe(recipe)
        return result.path(variant.name).read_bytes(), result  # read before a temporary output folder goes


def _model_file(model, work: Path) -> Path:
    if isinstance(model, (str, Path)):
        return Path(model)
    from edgequant.model.source_model import _is_keras3

    path = work / ("model.keras" if _is_keras3(model) else "model.h5")
    model.save(path)
    return path


def _data_file(data, work: Path, role: str) -> DataSpec | dict:
    if isinstance(data, DataSpec):  # as fields: an evaluation section is an EvaluationSpec, a subclass of DataSpec
        return data.model_dump()
    labels = None
    if isinstance(data, tuple) and len(data) == 2:
        data, labels = data
    samples = data() if callable(data) else data
    x = np.stack([np.asarray(s, dtype=np.float32) for s in samples])
    np.save(work / f"{role}.npy", x, allow_pickle=False)
    source = {"type": "npy", "path": work / f"{role}.npy"}
    if labels is not None:
        np.save(work / f"{role}_labels.npy", np.asarray(labels), allow_pickle=False)
        source["labels"] = work / f"{role}_labels.npy"
    return {"source": source}
