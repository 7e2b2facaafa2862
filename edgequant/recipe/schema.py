"""The recipe: one typed schema behind the YAML files, the Python API and the JSON Schema.

Paths in a recipe file are relative to that file; in Python they are relative to
the working directory. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationInfo,
    field_validator,
    model_validator,
)

SCHEMA_VERSION = 1
MAX_NAME_LENGTH = 100  # "<name>.tflite" and "build/<name>" stay far below every file system's 255-byte limit


class StrictModel(BaseModel):
    """Unknown keys are errors, and values are not coerced: `samples: true` is not 1, `1.5` is not an int."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = Path(value).expanduser()
    return Path(os.path.normpath(value if value.is_absolute() or base is None else Path(base) / value))


RecipePath = Annotated[Path, Strict(False), AfterValidator(_resolve_path)]
"""A path relative to the recipe file (or to the working directory in Python)."""


# --- data: calibration, evaluation and training share one description --------------------------

Dimension = Annotated[int, Strict(), Field(gt=0, le=1 << 20)]
SampleCount = Annotated[int, Field(gt=0, le=sys.maxsize)]


class Preprocess(StrictModel):
    """How raw samples become model inputs, applied in this order:
    resize, color, cast to float32, `* scale`, `(x - mean) / std`, layout."""

    resize: Annotated[tuple[Dimension, Dimension], Strict(False)] | None = Field(
        None, description="(height, width) to resize images to"
    )
    color: Literal["keep", "rgb", "grayscale"] = "keep"
    scale: float = Field(1.0, allow_inf_nan=False, description="multiply raw values, e.g. 1/255 to map 0..255 to 0..1")
    mean: float | list[float] = 0.0
    std: float | list[float] = 1.0
    layout: Literal["nhwc", "nchw"] = Field("nhwc", description="layout the model expects; sources are NHWC")

    @field_validator("std")
    @classmethod
    def _std_positive(cls, v):
        values = v if isinstance(v, list) else [v]
        if any(s <= 0 for s in values):
            raise ValueError("every std must be > 0")
        return v


class NpySource(StrictModel):
    """Samples stacked along axis 0 in a .npy file; labels optionally in another."""

    type: Literal["npy"] = "npy"
    path: RecipePath
    labels: RecipePath | None = None


class NpzSource(StrictModel):
    """Arrays in a .npz file: `key` holds the samples, `labels_key` the labels."""

    type: Literal["npz"] = "npz"
    path: RecipePath
    key: str = "x"
    labels_key: str | None = None


class ImageFolderSource(StrictModel):
    """Image files in a folder. With `labels: subfolders`, each subfolder is a class (sorted)."""

    type: Literal["images"] = "images"
    path: RecipePath
    labels: Literal["none", "subfolders"] = "none"
    extensions: list[str] = [".png", ".jpg", ".jpeg", ".bmp"]


class FashionMnistSource(StrictModel):
    """Fashion-MNIST from Debian's `dataset-fashion-mnist` (gzip IDX files), uint8 28x28x1."""

    type: Literal["fashion-mnist"] = "fashion-mnist"
    split: Literal["train", "test"] = "train"
    path: RecipePath = Path("/usr/share/datasets/fashion-mnist")


class CallableSource(StrictModel):
    """A Python function `package.module:function` that yields samples, or (sample, label) pairs."""

    type: Literal["callable"] = "callable"
    target: str = Field(..., description="'package.module:function'")
    kwargs: dict[str, Any] = {}

    @field_validator("target")
    @classmethod
    def _target_form(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", v):
            raise ValueError(f"{v!r} is not of the form 'package.module:function'")
        return v


Source = Annotated[
    Union[NpySource, NpzSource, ImageFolderSource, FashionMnistSource, CallableSource],
    Field(discriminator="type"),
]


class DataSpec(StrictModel):
    """A stream of samples: where they come from, how they are preprocessed, how many to take."""

    source: Source
    preprocess: Preprocess = Preprocess()
    samples: SampleCount | None = Field(
        None, description="take at most this many samples (default: all; required for a callable source)"
    )

    @model_validator(mode="after")
    def _callable_is_bounded(self) -> "DataSpec":
        if isinstance(self.source, CallableSource) and self.samples is None:
            raise ValueError("a callable source needs `samples`: how many samples to take from it at most")
        return self


class EvaluationSpec(DataSpec):
    """Held-out data every variant is evaluated on, against the float32 reference."""

    preprocess: Preprocess | None = Field(None, description="default: the calibration section's preprocess")
    batch_size: int = Field(256, gt=0, description="samples per interpreter call, where the model allows batching")
    top_k: int = Field(5, gt=0)
    class_names: list[str] | None = Field(
        None, description="the name of each class id, in order (default: what the data source knows, if anything)"
    )
    allow_degenerate_reference: bool = Field(
        False, description="check the gates even when the float32 reference's outputs do not depend on its input"
    )
    outputs: list[str | int] | None = Field(
        None, description="the outputs the gates and the verdict use, by name or index (default: all; the headline "
        "figures are the worst over them). Every output is measured and reported either way")
    output_kinds: dict[str | int, Literal["classes", "values"]] = Field(
        {}, description="override how an output (by name or index) is measured: classes (agreement, accuracy) or "
        "values (cosine, relative error); default: classes for probability outputs and a single [batch, classes] "
        "output, values otherwise")


class BenchmarkSpec(StrictModel):
    """How every variant is timed on the host (LiteRT interpreter)."""

    enabled: bool = True
    threads: int = Field(1, gt=0)
    runs: int = Field(50, gt=0)
    warmup: int = Field(5, ge=0)
    kernels: Literal["xnnpack", "builtin", "reference"] = "xnnpack"


# --- gates -----------------------------------------------------------------------------------------


class Gates(StrictModel):
    """Limits a variant must meet; `edgequant build` exits 1 when one fails. Drops are against float32."""

    max_accuracy_drop_points: float | None = Field(
        None, ge=0, description="top-1 accuracy drop in percentage points (90.5% -> 89.9% is 0.6)"
    )
    max_accuracy_drop_percent: float | None = Field(
        None, ge=0, description="top-1 accuracy drop relative to float32, in percent of float32's accuracy"
    )
    min_agreement_percent: float | None = Field(
        None, ge=0, le=100, description="share of samples whose top-1 matches float32's"
    )
    min_cosine: float | None = Field(None, ge=-1, le=1, description="mean cosine similarity of outputs to float32's")
    max_size_kib: float | None = Field(None, gt=0)
    max_latency_ms: dict[str, float] = Field(
        {}, description="per device: 'host' (measured) or a device profile listed in `devices`"
    )

    @property
    def needs_evaluation(self) -> bool:
        return any(
            v is not None
            for v in (self.max_accuracy_drop_points, self.max_accuracy_drop_percent, self.min_agreement_percent,
                      self.min_cosine)
        )


# --- variants ------------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


Format = Literal["tflite", "onnx"]
ONNX_MODES = frozenset({"float32", "int8"})  # float32 through tf2onnx; int8 as QDQ ONNX through onnxruntime


class _VariantBase(StrictModel):
    name: str = Field(..., pattern=f"^{_NAME}$", max_length=MAX_NAME_LENGTH, description="artifact name: <name>.tflite")
    gates: Gates | None = None
    formats: list[Format] | None = Field(
        None, description="files to write: tflite always, onnx too for float32 and int8 (default: the recipe's)"
    )


class Float32Variant(_VariantBase):
    """Plain conversion: the float reference every other variant is compared with."""

    mode: Literal["float32"] = "float32"


class Float16Variant(_VariantBase):
    """float16 weights, dequantized to float32 at load time (or run in fp16 where the CPU has it)."""

    mode: Literal["float16"] = "float16"


class DynamicVariant(_VariantBase):
    """Dynamic-range: int8 weights, activations quantized on the fly at run time."""

    mode: Literal["dynamic"] = "dynamic"


IntIO = Literal["float32", "int8", "uint8"]


class Int8Variant(_VariantBase):
    """Full-integer static quantization, calibrated on the recipe's representative dataset."""

    mode: Literal["int8"] = "int8"
    input_type: IntIO = "int8"
    output_type: IntIO = "int8"
    per_channel: bool = Field(True, description="per-channel weight scales (False: one scale per tensor)")
    calibration_samples: SampleCount | None = Field(None, description="default: the calibration set's `samples`")
    float_layers: list[str] | Literal["auto"] = Field(
        [],
        description="layers to keep in float (names as in the report's per-layer table), or 'auto': keep the "
        "fewest most-sensitive layers in float until this variant's accuracy gates pass",
    )
    float_ops: list[str] = Field([], description="op types to keep in float, e.g. [SOFTMAX, ADD]")
    max_float_layers: int = Field(8, gt=0, description="with float_layers: auto, give up beyond this many")
    analyse_layers: bool = Field(
        True, description="report each layer's int8 error (calibrates a second time: turn off for big models)"
    )
    equalize: bool = Field(
        False, description="cross-layer equalization of the float model's weights before quantizing (Keras 3 models)"
    )
    bias_correction: bool | Literal["weights", "empirical"] = Field(
        False, description="correct each layer's bias for the mean error of its int8 weights (true or weights: "
        "computed in Keras, Keras 3 models), or for the mean error of its output measured on the int8 model "
        "itself, layer after layer (empirical: weights, activation rounding and clipping; any model)"
    )
    adaround: bool = Field(
        False, description="round each int8 weight up or down to minimize its layer's output error on the "
        "calibration data, instead of to nearest (AdaRound's objective; Keras 3 models)"
    )
    ranges: Literal["minmax", "percentile", "mse"] = Field(
        "minmax", description="activation ranges: calibrated min/max, a percentile of the values, or MSE-optimal"
    )
    percentile: float = Field(99.99, gt=50, le=100, description="with ranges: percentile, the percentile kept")

    @property
    def mixed_precision(self) -> bool:
        return bool(self.float_layers) or bool(self.float_ops)

    @property
    def bias_correction_mode(self) -> str | None:
        """'weights', 'empirical', or None without bias correction (true means 'weights')."""
        return "weights" if self.bias_correction is True else self.bias_correction or None

    @property
    def int8_fixes(self) -> bool:
        """Whether any all-integer fix (equalize, adaround, bias_correction, ranges) is asked for."""
        return self.equalize or self.adaround or self.bias_correction_mode is not None or self.ranges != "minmax"


class Int16x8Variant(_VariantBase):
    """16-bit activations, 8-bit weights: closer to float than int8, not run by XNNPACK."""

    mode: Literal["int16x8"] = "int16x8"
    input_type: Literal["float32", "int16"] = "float32"
    output_type: Literal["float32", "int16"] = "float32"
    calibration_samples: SampleCount | None = None


class QatVariant(_VariantBase):
    """Quantization-aware training: fine-tune a fake-quantized copy, then convert to full integer."""

    mode: Literal["qat"] = "qat"
    training: DataSpec | None = Field(None, description="labelled training data (default: the calibration data)")
    epochs: int = Field(1, gt=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(1e-4, gt=0)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    loss: str = Field("sparse_categorical_crossentropy", description="a Keras loss name")
    input_type: IntIO = "int8"
    output_type: IntIO = "int8"
    weight_bits: Literal[8, 4] = Field(
        8, description="4: 4-bit weights and 8-bit activations (tfmot's n-bit scheme), stored as INT4 by the converter"
    )


# --- ≤4-bit weights (edgequant.lowbit, the `lowbit` extra) -------------------------------------------


class Int4Variant(_VariantBase):
    """4-bit weights packed after training by Google's quantizer; activations float, quantized to int8 at run time."""

    mode: Literal["int4"] = "int4"
    dense_block_size: Literal[32, 64, 128, 256] | None = Field(
        None, description="blockwise scales for dense layers, one per this many weights (default: one per channel)"
    )


class TernaryVariant(_VariantBase):
    """Ternary weights ({-1, 0, +1} x a scale per output channel) learnt by QAT, then packed as INT2 for dense
    layers; convolutions are trained and packed at `conv_bits`. Activations: float, quantized at run time."""

    mode: Literal["ternary"] = "ternary"
    training: DataSpec | None = Field(None, description="labelled training data (default: the calibration data)")
    epochs: int = Field(2, ge=0, description="QAT epochs; 0 packs the float weights untrained (see allow_post_training)")
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "sgd", "rmsprop"] = "adam"
    loss: str = Field("sparse_categorical_crossentropy", description="a Keras loss name")
    conv_bits: Literal[2, 4, 8] = Field(
        8, description="weight bits of convolutions: 8 or 4 (2 is refused: LiteRT 2.3 computes INT2 CONV_2D wrong)"
    )
    allow_post_training: bool = Field(
        False, description="with epochs: 0, pack the untrained float weights to INT2 anyway (accuracy collapses)"
    )

    @model_validator(mode="after")
    def _refusals(self):
        if self.conv_bits == 2:  # lifted when a runtime computes it right: tests/test_lowbit.py shows it does not
            raise ValueError("conv_bits: 2 is refused: ai-edge-litert 2.3 computes INT2 convolutions wrong; "
                             "use conv_bits: 4 or 8")
        if self.epochs == 0 and not self.allow_post_training:
            raise ValueError("post-training INT2 collapses accuracy (the Fashion-MNIST CNN: 90.6% -> 47.1% top-1); "
                             "train first (epochs: 1 or more), or set allow_post_training: true")
        return self


class BinaryVariant(TernaryVariant):
    """Binary weights ({-1, +1} x a scale per output channel) learnt by QAT, packed like `ternary`."""

    mode: Literal["binary"] = "binary"


Variant = Annotated[
    Union[Float32Variant, Float16Variant, DynamicVariant, Int8Variant, Int16x8Variant, QatVariant, Int4Variant,
          TernaryVariant, BinaryVariant],
    Field(discriminator="mode"),
]
MODES: tuple[str, ...] = ("float32", "float16", "dynamic", "int8", "int16x8", "qat", "int4", "ternary", "binary")
CALIBRATED_MODES = frozenset({"int8", "int16x8"})
LOWBIT_MODES = frozenset({"int4", "ternary", "binary"})  # packed by Google's quantizer (edgequant[lowbit])
TRAINED_MODES = frozenset({"qat", "ternary", "binary"})  # fine-tuned on labelled data


# --- the recipe ----------------------------------------------------------------------------------


class ModelSpec(StrictModel):
    """The float source model: a Keras 3 `.keras`, a Keras 3 or tf_keras `.h5`, or a SavedModel directory."""

    path: RecipePath
    input_shape: list[int] | None = Field(
        None, description="override the input shape, without the batch dimension, e.g. [224, 224, 3]"
    )
    custom_objects: list[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")]] = Field(
        [], description="the custom layers (or other Keras objects) the model file names, as 'package.module:Name': "
        "imported to load the model, which runs that module's code, so the build needs --trust-code"
    )

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v):
        if v is not None and (not v or any(not 0 < d <= 1 << 20 for d in v)):
            raise ValueError("every dimension must be a positive integer (at most 1048576)")
        return v


class DeviceEntry(StrictModel):
    """A simulated device with the runtime to estimate for."""

    name: str = Field(..., description="profile name or YAML path")
    kernels: Literal["xnnpack", "builtin"] = Field(
        "xnnpack", description="xnnpack (LiteRT's default) or builtin (TFLite's builtin kernels, XNNPACK off)")


class Recipe(StrictModel):
    """Everything `edgequant build` needs: the model, its data, the variants to build and where to put them."""

    version: Literal[1] = SCHEMA_VERSION
    name: str = Field(
        "model", pattern=f"^{_NAME}$", max_length=MAX_NAME_LENGTH, description="used in reports; default: the file's stem"
    )
    model: ModelSpec
    calibration: DataSpec | None = Field(None, description="representative dataset for int8 / int16x8")
    evaluation: EvaluationSpec | None = Field(None, description="held-out data to evaluate every variant on")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    devices: list[DeviceEntry | str] = Field(
        [], description="simulated device profiles to estimate latency on: names or YAML paths (XNNPACK), "
                        "or {name, kernels} to pick the runtime")
    output_dir: RecipePath | None = Field(
        None, description="where artifacts, manifest and report go (default: build/<name> beside the recipe)"
    )
    variants: list[Variant] = Field(..., min_length=1)
    formats: list[Format] = Field(
        ["tflite"], description="files every variant writes unless it says otherwise (onnx: float32 and int8 only)"
    )
    registry: str | None = Field(
        None, description="MLflow tracking URI to log and register the build in, e.g. sqlite:///mlruns.db"
    )

    @model_validator(mode="before")
    @classmethod
    def _model_is_a_spec(cls, data: Any) -> Any:
        model = data.get("model") if isinstance(data, dict) else None
        if model is not None and hasattr(model, "inputs") and hasattr(model, "layers"):
            from edgequant.errors import InputError  # not a ValueError: pydantic lets it through as it is

            raise InputError(
                "Recipe(model=...) takes a ModelSpec, not a Keras model: save it first (model.save('model.keras')) "
                "and pass model=ModelSpec(path='model.keras'), or convert it in memory with edgequant.quantize(model, ...)"
            )
        return data

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> "Recipe":
        problems = cross_field_problems(self)
        collect = (info.context or {}).get("cross_field_problems")
        if collect is not None:  # the file loader reports them all, each at its own line
            collect.extend(problems)
        elif problems:
            loc, message = problems[0]
            raise ValueError(f"{dotted_path(loc)}: {message}" if loc else message)
        return self

    @property
    def device_names(self) -> list[str]:
        return [d if isinstance(d, str) else d.name for d in self.devices]

    def device_kernels(self, name: str) -> str:
        """The kernel family a device's estimates are for."""
        return next((d.kernels for d in self.devices if isinstance(d, DeviceEntry) and d.name == name), "xnnpack")

    def evaluation_data(self) -> "EvaluationSpec | None":
        """The evaluation section with its preprocess defaulted to calibration's."""
        if self.evaluation is None or self.evaluation.preprocess is not None:
            return self.evaluation
        default = self.calibration.preprocess if self.calibration is not None else Preprocess()
        return self.evaluation.model_copy(update={"preprocess": default})

    def variant_formats(self, variant) -> list[str]:
        """The variant's own formats, else the recipe's (onnx only where the mode has an ONNX form)."""
        if variant.formats is not None:
            return list(variant.formats)
        return [f for f in self.formats if f != "onnx" or variant.mode in ONNX_MODES]

    def output_path(self) -> Path:
        return self.output_dir if self.output_dir is not None else Path("build") / self.name

    def variant(self, name: str):
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


Location = list  # a field's path in the recipe, e.g. ["variants", 2, "mode"]


def cross_field_problems(recipe: Recipe) -> list[tuple[Location, str]]:
    """Rules that span several fields, each with the location of the field to fix."""
    problems: list[tuple[Location, str]] = []
    seen: dict[str, int] = {}
    for i, v in enumerate(recipe.variants):
        formats = recipe.variant_formats(v)
        if "tflite" not in formats:
            problems.append((["variants", i, "formats"], f"variant {v.name!r}: formats must include tflite (now {formats})"))
        if "onnx" in (v.formats or []) and v.mode not in ONNX_MODES:
            problems.append((["variants", i, "formats"],
                             f"variant {v.name!r}: onnx is written for modes {sorted(ONNX_MODES)}, not {v.mode!r}"))
        if v.name == "float32" and v.mode != "float32":
            problems.append((["variants", i, "name"], f"a {v.mode} variant cannot be named 'float32': "
                                                      "the name means the float32 reference"))
        if v.name in seen:
            problems.append((["variants", i, "name"], f"two variants are named {v.name!r} "
                                                      f"(variants[{seen[v.name]}] too); names must be unique"))
        seen.setdefault(v.name, i)
    needs = [v.name for v in recipe.variants if v.mode in CALIBRATED_MODES]
    if needs and recipe.calibration is None:
        problems.append((["variants", next(i for i, v in enumerate(recipe.variants) if v.mode in CALIBRATED_MODES),
                          "mode"], f"variants {needs} need a `calibration` section (a representative dataset)"))
    custom = any(d.endswith((".yaml", ".yml")) for d in recipe.device_names)
    for i, v in enumerate(recipe.variants):
        trained = v.mode in TRAINED_MODES and getattr(v, "epochs", 1) > 0
        if trained and v.training is None and recipe.calibration is None:
            problems.append((["variants", i, "mode"], f"variant {v.name!r}: QAT needs labelled training data: add a "
                                                      "`training` section to the variant (or a `calibration` section)"))
        auto = getattr(v, "float_layers", None) == "auto"
        accuracy = bool(v.gates and v.gates.needs_evaluation)
        if recipe.evaluation is None and (accuracy or auto):
            problems.append((["variants", i, "gates" if accuracy else "float_layers"],
                             f"variant {v.name!r} has accuracy gates or float_layers: auto: add `evaluation`"))
        if auto and not accuracy:
            problems.append((["variants", i, "float_layers"],
                             f"variant {v.name!r}: float_layers: auto needs an accuracy gate to aim at"))
        for device in (v.gates.max_latency_ms if v.gates else {}):
            loc = ["variants", i, "gates", "max_latency_ms", device]
            if device == "host" and not recipe.benchmark.enabled:
                problems.append((loc, f"variant {v.name!r} gates host latency but `benchmark.enabled` is false"))
            if device != "host" and device not in recipe.device_names and not custom:
                problems.append((loc, f"variant {v.name!r} gates latency on {device!r}, which is not measured: "
                                      f"add it to `devices` (now {recipe.device_names})"))
    return problems


def dotted_path(loc: Location) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def json_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgequant recipe"
    return schema
