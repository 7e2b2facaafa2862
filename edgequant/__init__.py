"""edgequant: trained Keras/TensorFlow model in, small, fast, verified .tflite artifacts out.

Importing edgequant is cheap and changes no global state: TensorFlow is imported by
the functions that need it.
"""

__version__ = "0.1.0"

from edgequant.api import build, fetch, quantize
from edgequant.errors import EdgequantError
from edgequant.recipe.loader import load_recipe
from edgequant.recipe.schema import (
    CallableSource,
    DataSpec,
    DynamicVariant,
    FashionMnistSource,
    Float16Variant,
    Float32Variant,
    ImageFolderSource,
    Int8Variant,
    Int16x8Variant,
    ModelSpec,
    NpySource,
    NpzSource,
    Preprocess,
    QatVariant,
    Recipe,
)

__all__ = [
    "build", "quantize", "fetch", "load_recipe", "EdgequantError", "Recipe", "ModelSpec", "DataSpec", "Preprocess",
    "NpySource", "NpzSource", "ImageFolderSource", "FashionMnistSource", "CallableSource",
    "Float32Variant", "Float16Variant", "DynamicVariant", "Int8Variant", "Int16x8Variant", "QatVariant",
]
