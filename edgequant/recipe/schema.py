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


# --- variants ------------------------------------------------------------------------------------

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"


class _VariantBase(StrictModel):
    name: str = Field(..., pattern=f"^{_NAME}$", description="artifact name: <name>.tflite")


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
        return self

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
