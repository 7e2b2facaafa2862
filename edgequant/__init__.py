"""edgequant: trained Keras/TensorFlow model in, small, fast, verified .tflite artifacts out.

Importing edgequant is cheap and changes no global state: TensorFlow is imported by
the functions that need it.
"""

from edgequant.lazy import lazy_exports
from edgequant.version import __version__

_EXPORTS = {
    "build": "edgequant.api",
    "quantize": "edgequant.api",
    "fetch": "edgequant.api",
    "load_recipe": "edgequant.recipe.loader",
    "EdgequantError": "edgequant.errors",
    "CallableSource": "edgequant.recipe.schema",
    "DataSpec": "edgequant.recipe.schema",
    "DynamicVariant": "edgequant.recipe.schema",
    "FashionMnistSource": "edgequant.recipe.schema",
    "Float16Variant": "edgequant.recipe.schema",
    "Float32Variant": "edgequant.recipe.schema",
    "ImageFolderSource": "edgequant.recipe.schema",
    "Int8Variant": "edgequant.recipe.schema",
    "Int16x8Variant": "edgequant.recipe.schema",
    "ModelSpec": "edgequant.recipe.schema",
    "NpySource": "edgequant.recipe.schema",
    "NpzSource": "edgequant.recipe.schema",
    "Preprocess": "edgequant.recipe.schema",
    "QatVariant": "edgequant.recipe.schema",
    "Recipe": "edgequant.recipe.schema",
}
__all__ = list(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)  # `import edgequant` loads none of them
