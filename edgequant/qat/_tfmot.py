"""Import tensorflow-model-optimization without letting it change the process.

tfmot 0.8 sets `TF_USE_LEGACY_KERAS=1` when it is imported and then touches `tf.keras`,
so whichever of the two comes first decides what `tf.keras` is for the whole process
(DESIGN.md). Here `tf.keras` is resolved first, under the environment the user set, and
the variable is put back afterwards: tfmot then finds Keras 3 behind `tf.keras` and
takes `tf_keras` itself, and code that runs later (or a child process) sees the
environment it had before.
"""

from __future__ import annotations

import os
import sys

_ENV = "TF_USE_LEGACY_KERAS"


def load_tfmot():
    """The `tensorflow_model_optimization` module, imported once, with no lasting side effect."""
    module = sys.modules.get("tensorflow_model_optimization")
    if module is not None:
        return module
    import tensorflow as tf

    previous = os.environ.get(_ENV)
    getattr(tf.keras, "version", None)  # resolve the lazy `tf.keras` now, as the user's environment says
    try:
        import tensorflow_model_optimization as module
    finally:
        if previous is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = previous
    return module


def quantization_api():
    """`tfmot.quantization.keras`: quantize_apply, quantize_annotate_layer, quantize_scope, QuantizeConfig..."""
    return load_tfmot().quantization.keras
