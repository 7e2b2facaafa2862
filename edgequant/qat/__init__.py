"""Quantization-aware training (QAT) with tensorflow-model-optimization, for training scripts and recipes.

    from edgequant import qat
    qat_model = qat.prepare(model)        # a Keras 3 model is rebuilt in tf_keras; a tf_keras one goes as is
    qat_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    qat_model.fit(x, y, epochs=1)         # your own loop, callbacks, data
    tflite_bytes = qat.export(qat_model, input_type="int8", output_type="int8")

    qat.save(qat_model, "qat.h5")         # model, fake-quant ranges and optimizer state
    qat_model = qat.load("qat.h5")        # ... and go on fitting

tfmot works only with tf_keras (Keras 2): the model `prepare` returns is a tf_keras model, so
compile it with tf_keras objects or with names. Importing this package imports neither
TensorFlow nor tfmot; the first call that needs tfmot imports it without changing what
`tf.keras` means for the process (see `_tfmot.py`).
"""

from edgequant.qat.checkpoint import load, quantize_scope, save
from edgequant.qat.export import export, float_operators
from edgequant.qat.keras_bridge import to_tf_keras
from edgequant.qat.prepare import annotate, is_qat_model, prepare, unsupported_reason
from edgequant.qat.variant import build_qat_variant

__all__ = [
    "prepare", "annotate", "export", "save", "load", "quantize_scope", "to_tf_keras", "is_qat_model",
    "unsupported_reason", "float_operators", "build_qat_variant", "NoOpQuantizeConfig", "OutputQuantizeConfig",
]


def __getattr__(name: str):
    # The QuantizeConfig classes subclass tfmot's, so importing them imports tfmot: only on first use.
    if name in ("NoOpQuantizeConfig", "OutputQuantizeConfig"):
        from edgequant.qat import configs

        return getattr(configs, name)
    raise AttributeError(f"module 'edgequant.qat' has no attribute {name!r}")
