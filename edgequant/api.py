"""The Python API: the same recipe objects as the YAML files, for Keras training code.

    import edgequant as eq
    tflite = eq.quantize(model, "int8", calibration=x_train[:500])          # bytes
    result = eq.build("recipes/fashion_mnist.yaml")                          # a BuildResult
    result = eq.build(eq.Recipe(model=eq.ModelSpec(path="m.keras"), ...))     # the same, in Python
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter, ValidationError

from edgequant.data.stream import check_sample, iter_samples
from edgequant.errors import DataError, InputError
from edgequant.process.native_log import native_log_to_file
from edgequant.process.scratch import scratch_prefix
from edgequant.recipe.schema import CALIBRATED_MODES, LOWBIT_MODES, TRAINED_MODES, DataSpec, Recipe, Variant

Calibration = DataSpec | np.ndarray | Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]]


def quantize(
    model: Any,
    mode: str = "int8",
    *,
    calibration: Calibration | None = None,
    input_shape: list[int] | None = None,
    devices: list[str] = (),
    evaluation: DataSpec | np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    report: bool = False,
    output_dir: str | Path | None = None,
    trust_code: bool = False,
    custom_objects: Sequence[str | type] = (),
    **options: Any,
) -> bytes | tuple[bytes, Any]:
    """Convert a Keras model (in memory, Keras 3 or tf_keras, or a model file path) to .tflite bytes.

    `mode` and `options` are a recipe variant's (e.g. `per_channel=False`, `input_type="uint8"`, and for int8
    the all-integer fixes `equalize=True`, `adaround=True`, `bias_correction=True` (or `"empirical"`: measured on
    the int8 model, layer after layer), `ranges="mse"`: the result is plain int8 when the fixes do not improve it
    on held-out calibration data).
    `calibration` (int8, int16x8) is a DataSpec, an array of preprocessed samples stacked on
    axis 0, an iterable of samples, or a function returning a fresh iterable.

    With `devices`, `evaluation` (a DataSpec, an array, or `(samples, labels)`), `report=True`
    or `output_dir`, the variant is built beside its float32 reference by the same pipeline as
    `edgequant build`: evaluated, timed on the host, estimated on the simulated devices.
    `report=True` returns `(bytes, report)`, the build's `Report`; `output_dir` keeps its files
    (artifacts, report.json, report.md, report.html).
    A model file with Lambda layers (whose loading runs Python) needs `trust_code=True` (or EDGEQUANT_TRUST_CODE=1).
    `custom_objects`: the custom layers a model file names, as classes, or as 'package.module:Name' strings
    (imported here, which runs that module: strings need `trust_code=True`).
    """
    with _custom_object_scope(custom_objects, trust_code):
        return _quantize(model, mode, calibration=calibration, input_shape=input_shape, devices=devices,
                         evaluation=evaluation, report=report, output_dir=output_dir, trust_code=trust_code,
                         **options)


@contextmanager
def _custom_object_scope(custom_objects, trust_code: bool):
    """Keras 3's and tf_keras' custom-object scopes holding `custom_objects`, for every model loaded inside."""
    if not custom_objects:
        yield
        return
    from edgequant.model.source_model import custom_object_classes

    objects = custom_object_classes(custom_objects, trust_code=trust_code)
    import keras
    import tf_keras

    with keras.saving.custom_object_scope(objects), tf_keras.utils.custom_object_scope(objects):
        yield


def _quantize(model, mode, *, calibration, input_shape, devices, evaluation, report, output_dir, trust_code,
              **options):
    from edgequant.model.source_model import export_keras_model, export_model
    from edgequant.quantization.convert import convert_variant

    if mode in TRAINED_MODES:
        raise InputError(f"mode {mode!r} trains the model: use edgequant.qat.prepare / export (qat) or "
                         "edgequant.lowbit.prepare_lowbit (ternary, binary) from training code")
    try:
        variant = TypeAdapter(Variant).validate_python({"name": mode, "mode": mode, **options})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"][1:]) or "mode"
        raise InputError(f"quantize(mode={mode!r}): {field}: {err['msg']}") from None
    if variant.mode in CALIBRATED_MODES and calibration is None:
        raise InputError(f"quantize(mode={mode!r}) needs calibration data (a representative dataset)")
    if devices or evaluation is not None or report or output_dir is not None:
        from edgequant.quick import build_variant_with_report

        with native_log_to_file():
            data, result = build_variant_with_report(model, variant, calibration=calibration, evaluation=evaluation,
                                                     devices=devices, input_shape=input_shape, output_dir=output_dir)
        return (data, result.report) if report else data
    with native_log_to_file(), tempfile.TemporaryDirectory(prefix=scratch_prefix("api")) as work:
        if isinstance(model, (str, Path)):
            exported = export_model(Path(model), Path(work), input_shape, trust_code=trust_code)
        else:
            exported = export_keras_model(model, Path(work), input_shape=input_shape)
        representative = _representative(calibration, exported.data_inputs) if variant.mode in CALIBRATED_MODES else None
        if variant.mode in LOWBIT_MODES:  # int4: the float32 conversion, packed by Google's quantizer
            from edgequant.lowbit import build_lowbit_variant
            from edgequant.process.progress import NullProgress
            from edgequant.recipe.schema import Float32Variant

            float32 = convert_variant(exported.saved_model_dir, Float32Variant(name="float32"))
            return build_lowbit_variant(None, variant, exported, NullProgress(), lambda: float32)[0]
        data = convert_variant(exported.saved_model_for(variant.mode), variant, representative)
        if variant.mode == "int8" and variant.int8_fixes:
            from edgequant.int8_fixes import build_fixed_int8
            from edgequant.recipe.schema import Float32Variant

            reference = convert_variant(exported.saved_model_dir, Float32Variant(name="float32"))
            data = build_fixed_int8(exported, variant, representative, plain=data, reference=reference,
                                    work_dir=Path(work)).data
        return data


def _representative(calibration: Calibration, model_input) -> Callable[[], Iterator[np.ndarray]]:
    """`model_input`: an InputSpec, or a tuple of them for a model with several inputs (whose samples are then
    dicts {input name: array})."""
    if isinstance(calibration, DataSpec):
        return lambda: (s.x for s in iter_samples(calibration, model_input, role="calibration"))
    inputs = {i.name: i for i in model_input} if isinstance(model_input, tuple) else None

    def checked() -> Iterator[np.ndarray]:
        samples = calibration() if callable(calibration) else calibration
        index = -1
        for index, x in enumerate(samples):
            if inputs is not None:
                if not isinstance(x, dict) or set(x) != set(inputs):
                    raise DataError(f"calibration sample {index}: the model's inputs are {', '.join(inputs)}; give "
                                    "each sample as a dict {input name: array}")
                x = {k: np.asarray(v, dtype=np.float32) for k, v in x.items()}
                for name, v in x.items():
                    check_sample(v, index, inputs[name], source="the calibration argument", role="calibration")
                yield x
                continue
            x = np.asarray(x, dtype=np.float32)
            check_sample(x, index, model_input, source="the calibration argument", role="calibration")
            yield x
        if index < 0:  # the converter would silently leave the model unquantized
            raise DataError("the calibration argument holds no samples")

    return checked


def build(recipe: Recipe | str | Path, **kwargs: Any):
    """Build a recipe (object or file): see `edgequant.pipeline.build_recipe`."""
    from edgequant.pipeline import build_recipe

    with native_log_to_file():
        return build_recipe(recipe, **kwargs)


def fetch(model: str | Path, dest: str | Path | None = None, *, registry: str | None = None) -> Path:
    """A built .tflite: a path as it is, or a registry reference (models:/NAME@ALIAS, models:/NAME/VERSION)
    downloaded from the MLflow store `registry` (default $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db) into `dest`."""
    from edgequant.output.registry import is_reference, resolve

    if not is_reference(model):
        return Path(model)
    return resolve(str(model), Path(dest) if dest is not None else Path(tempfile.mkdtemp(prefix=scratch_prefix("registry"))), registry)
