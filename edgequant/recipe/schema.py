"""The recipe: one typed schema behind the YAML files, the Python API and the JSON Schema.

Paths in a recipe file are relative to that file; in Python they are relative to
the working directory. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

SCHEMA_VERSION = 1


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    value = Path(value).expanduser()
    return value if value.is_absolute() or base is None else Path(base) / value


RecipePath = Annotated[Path, AfterValidator(_resolve_path)]
"""A path relative to the recipe file (or to the working directory in Python)."""


# --- data: calibration, evaluation and training share one description --------------------------


class Preprocess(StrictModel):
    """How raw samples become model inputs, applied in this order:
    resize, color, cast to float32, `* scale`, `(x - mean) / std`, layout."""

    resize: tuple[int, int] | None = Field(None, description="(height, width) to resize images to")
    color: Literal["keep", "rgb", "grayscale"] = "keep"
    scale: float = Field(1.0, description="multiply raw values, e.g. 1/255 to map 0..255 to 0..1")
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
    samples: int | None = Field(None, gt=0, description="take at most this many samples (default: all)")


class EvaluationSpec(DataSpec):
    """Held-out data every variant is evaluated on, against the float32 reference."""

    preprocess: Preprocess | None = Field(None, description="default: the calibration section's preprocess")
    batch_size: int = Field(256, gt=0, description="samples per interpreter call, where the model allows batching")
    top_k: int = Field(5, gt=0)


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


class _VariantBase(StrictModel):
    name: str = Field(..., pattern=f"^{_NAME}$", description="artifact name: <name>.tflite")
    gates: Gates | None = None


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
    calibration_samples: int | None = Field(None, gt=0, description="default: the calibration set's `samples`")
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
    bias_correction: bool = Field(
        False, description="correct each layer's bias for the mean error of its int8 weights (Keras 3 models)"
    )
    ranges: Literal["minmax", "percentile", "mse"] = Field(
        "minmax", description="activation ranges: calibrated min/max, a percentile of the values, or MSE-optimal"
    )
    percentile: float = Field(99.99, gt=50, le=100, description="with ranges: percentile, the percentile kept")

    @property
    def mixed_precision(self) -> bool:
        return bool(self.float_layers) or bool(self.float_ops)

    @property
    def int8_fixes(self) -> bool:
        """Whether any all-integer fix (equalize, bias_correction, ranges) is asked for."""
        return self.equalize or self.bias_correction or self.ranges != "minmax"


class Int16x8Variant(_VariantBase):
    """16-bit activations, 8-bit weights: closer to float than int8, not run by XNNPACK."""

    mode: Literal["int16x8"] = "int16x8"
    input_type: Literal["float32", "int16"] = "float32"
    output_type: Literal["float32", "int16"] = "float32"
    calibration_samples: int | None = Field(None, gt=0)


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


Variant = Annotated[
    Union[Float32Variant, Float16Variant, DynamicVariant, Int8Variant, Int16x8Variant, QatVariant],
    Field(discriminator="mode"),
]
MODES: tuple[str, ...] = ("float32", "float16", "dynamic", "int8", "int16x8", "qat")
CALIBRATED_MODES = frozenset({"int8", "int16x8"})


# --- the recipe ----------------------------------------------------------------------------------


class ModelSpec(StrictModel):
    """The float source model: a Keras 3 `.keras`, a Keras 3 or tf_keras `.h5`, or a SavedModel directory."""

    path: RecipePath
    input_shape: list[int] | None = Field(
        None, description="override the input shape, without the batch dimension, e.g. [224, 224, 3]"
    )

    @field_validator("input_shape")
    @classmethod
    def _positive(cls, v):
        if v is not None and (not v or any(d <= 0 for d in v)):
            raise ValueError("every dimension must be a positive integer")
        return v


class Recipe(StrictModel):
    """Everything `edgequant build` needs: the model, its data, the variants to build and where to put them."""

    version: Literal[1] = SCHEMA_VERSION
    name: str = Field("model", pattern=f"^{_NAME}$", description="used in reports; default: the file's stem")
    model: ModelSpec
    calibration: DataSpec | None = Field(None, description="representative dataset for int8 / int16x8")
    evaluation: EvaluationSpec | None = Field(None, description="held-out data to evaluate every variant on")
    benchmark: BenchmarkSpec = BenchmarkSpec()
    devices: list[str] = Field([], description="simulated device profiles (names or YAML paths) to estimate latency on")
    output_dir: RecipePath | None = Field(
        None, description="where artifacts, manifest and report go (default: build/<name> beside the recipe)"
    )
    variants: list[Variant] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _cross_checks(self) -> "Recipe":
        seen: set[str] = set()
        for v in self.variants:
            if v.name in seen:
                raise ValueError(f"two variants are named {v.name!r}; names must be unique")
            seen.add(v.name)
        needs = [v.name for v in self.variants if v.mode in CALIBRATED_MODES]
        if needs and self.calibration is None:
            raise ValueError(f"variants {needs} need a `calibration` section (a representative dataset)")
        for v in self.variants:
            if self.evaluation is None and (
                (v.gates and v.gates.needs_evaluation) or getattr(v, "float_layers", None) == "auto"
            ):
                raise ValueError(f"variant {v.name!r} has accuracy gates or float_layers: auto: add `evaluation`")
            if getattr(v, "float_layers", None) == "auto" and not (v.gates and v.gates.needs_evaluation):
                raise ValueError(f"variant {v.name!r}: float_layers: auto needs an accuracy gate to aim at")
            for device in (v.gates.max_latency_ms if v.gates else {}):
                if device == "host" and not self.benchmark.enabled:
                    raise ValueError(f"variant {v.name!r} gates host latency but `benchmark.enabled` is false")
                custom = any(d.endswith((".yaml", ".yml")) for d in self.devices)
                if device != "host" and device not in self.devices and not custom:
                    raise ValueError(
                        f"variant {v.name!r} gates latency on {device!r}, which is not measured: "
                        f"add it to `devices` (now {self.devices})"
                    )
        return self

    def evaluation_data(self) -> "EvaluationSpec | None":
        """The evaluation section with its preprocess defaulted to calibration's."""
        if self.evaluation is None or self.evaluation.preprocess is not None:
            return self.evaluation
        default = self.calibration.preprocess if self.calibration is not None else Preprocess()
        return self.evaluation.model_copy(update={"preprocess": default})

    def output_path(self) -> Path:
        return self.output_dir if self.output_dir is not None else Path("build") / self.name

    def variant(self, name: str):
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)


def json_schema() -> dict[str, Any]:
    schema = Recipe.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edgequant recipe"
    return schema
