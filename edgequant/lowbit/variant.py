"""A recipe's `int4`, `ternary` or `binary` variant: (train,) pack with Google's quantizer, read back.

    int4              the float32 reference's weights packed to INT4 (post-training)
    ternary / binary  QAT with ternary / binary dense weights (edgequant.lowbit.weights) on the recipe's
                      labelled data, the trained weights put back into a plain float model, converted
                      to float32, then packed: INT2 dense layers, INT8 or INT4 convolutions

Post-training INT2 (epochs: 0) is refused by the recipe schema unless the variant allows it:
packing float weights to 2 bits without training loses tens of points of accuracy (measured:
the Fashion-MNIST CNN falls from 90.6% to 47.1% top-1).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgequant.errors import InputError
from edgequant.lowbit.pack import PackPlan, pack, require_quantizer
from edgequant.lowbit.readback import PackedWeights, check_packed
from edgequant.process.progress import Progress
from edgequant.process.scratch import scratch_prefix


def plan_for(variant) -> PackPlan:
    if variant.mode == "int4":
        return PackPlan(dense_bits=4, conv_bits=4, dense_block_size=variant.dense_block_size)
    return PackPlan(dense_bits=2, conv_bits=variant.conv_bits)


def build_lowbit_variant(recipe, variant, exported, progress: Progress,
                         reference: Callable[[], bytes]) -> tuple[bytes, PackedWeights]:
    """The packed .tflite bytes of `variant` and what the read-back found in them."""
    plan = plan_for(variant)  # the recipe schema has refused untrained INT2 and INT2 convolutions already
    label = f"variant {variant.name!r} ({variant.mode})"
    require_quantizer(label)  # before any training: a missing extra fails in seconds, not after the fine-tune
    if variant.mode == "int4" or variant.epochs == 0:
        float_tflite = reference()
    else:
        float_tflite = _trained_float_model(recipe, variant, exported, progress)
    with progress.task(f"pack {variant.name} ({plan.describe()})") as task:
        data = pack(float_tflite, plan, label=label)
        packed = check_packed(data, plan, label=label)
        task.advance()
    return data, packed


def _trained_float_model(recipe, variant, exported, progress: Progress) -> bytes:
    """Fine-tune with ternary/binary weights, then the float32 .tflite of the trained (ternarized) weights."""
    from edgequant.lowbit.weights import CUSTOM_OBJECTS
    from edgequant.model.source_model import export_keras_model
    from edgequant.process.cache import cache_dir
    from edgequant.qat.checkpoint import EpochCheckpoints
    from edgequant.qat.training import compile_for_qat, fine_tune
    from edgequant.qat.variant import work_key
    from edgequant.quantization.convert import convert_variant
    from edgequant.recipe.schema import Float32Variant

    label = f"variant {variant.name!r} ({variant.mode})"
    if exported.keras_model is None:
        raise InputError(f"{label}: QAT fine-tunes Keras layers, and {recipe.model.path} is a SavedModel, which has "
                         "none; point model.path at the .keras or .h5 file it was exported from, or use mode int4")
    data = variant.training or recipe.calibration
    with progress.task(f"prepare {variant.name} ({variant.mode})") as task:
        model = prepare_lowbit(exported.keras_model, scheme=variant.mode, conv_bits=variant.conv_bits)
        compile_for_qat(model, optimizer=variant.optimizer, learning_rate=variant.learning_rate, loss=variant.loss)
        task.advance()
    checkpoints = EpochCheckpoints(cache_dir() / "lowbit" / work_key(recipe, variant, exported, data))
    model, result = fine_tune(model, data, exported.input, epochs=variant.epochs, batch_size=variant.batch_size,
                              label=f"fine-tune {variant.name} ({variant.mode})", progress=progress,
                              checkpoints=checkpoints, custom_objects=CUSTOM_OBJECTS)
    if result.loss is not None:
        accuracy = f", accuracy {result.accuracy:.4f}" if result.accuracy is not None else ""
        progress.log(f"{label}: {result.epochs_trained} epoch(s) trained, last-epoch training loss "
                     f"{result.loss:.4f}{accuracy}")
    with tempfile.TemporaryDirectory(prefix=scratch_prefix("lowbit")) as work:
        plain = quantized_float_model(model, exported.keras_model)
        saved = export_keras_model(plain, Path(work), input_shape=recipe.model.input_shape)
        float_tflite = convert_variant(saved.saved_model_dir, Float32Variant(name=variant.name))
    checkpoints.clear()
    return float_tflite


def prepare_lowbit(model, *, scheme: str, conv_bits: int = 8):
    """A tf_keras QAT model of `model` whose dense kernels train as `scheme` (ternary or binary) and whose
    convolutions train at `conv_bits` per channel; every other layer is left float."""
    from edgequant.lowbit.weights import CUSTOM_OBJECTS, config_for
    from edgequant.qat.keras_bridge import to_tf_keras
    from edgequant.qat.prepare import prepare

    base = to_tf_keras(model)
    configs = {}
    for layer in base.layers:
        config = config_for(layer, scheme=scheme, conv_bits=conv_bits)
        if config is not None:
            configs[layer.name] = config
    if not configs:
        raise InputError(f"model {base.name!r} has no Dense or Conv2D layer to train low-bit")
    return prepare(base, layers=list(configs), configs=configs, custom_objects=CUSTOM_OBJECTS)


def quantized_float_model(qat_model, source_model):
    """A plain tf_keras copy of `source_model` holding the QAT model's weights, each trained kernel replaced by
    its quantized (ternary, binary or fake-quantized) values: what the quantizer then packs exactly."""
    from edgequant.qat.keras_bridge import to_tf_keras

    plain = to_tf_keras(source_model)
    wrapped = {layer.layer.name: layer for layer in qat_model.layers
               if type(layer).__name__.startswith("QuantizeWrapper")}
    others = {layer.name: layer for layer in qat_model.layers}
    for layer in plain.layers:
        if layer.name in wrapped:
            wrapper = wrapped[layer.name]
            # tfmot swaps the quantized kernel into the inner layer's attribute: read the float variables from
            # the wrapper and the other weights (bias) from the inner layer, by attribute name.
            quantized = {_attribute(w): np.asarray(q(w, training=False, weights=v)) for w, q, v in wrapper._weight_vars}
            layer.set_weights([quantized.get(_attribute(w), None) if _attribute(w) in quantized
                               else getattr(wrapper.layer, _attribute(w)).numpy() for w in layer.weights])
        elif layer.weights and layer.name in others:
            layer.set_weights(others[layer.name].get_weights())
    return plain


def _attribute(weight) -> str:
    """'kernel' for a variable named 'dense/kernel:0'."""
    return weight.name.rsplit("/", 1)[-1].split(":")[0]
