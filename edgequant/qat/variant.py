"""A recipe's `qat` variant: wrap the source model, fine-tune it on the recipe's data, convert it.

Called by `edgequant.pipeline` for mode "qat". Checkpoints go to the cache folder described
in `edgequant.qat.checkpoint`, so an interrupted build resumes its fine-tune.
"""

from __future__ import annotations

import hashlib
import json

from edgequant.errors import InputError
from edgequant.process.cache import cache_dir
from edgequant.process.progress import Progress
from edgequant.qat.checkpoint import EpochCheckpoints
from edgequant.qat.export import export
from edgequant.qat.prepare import prepare, weight_bits_scheme
from edgequant.qat.training import compile_for_qat, fine_tune
from edgequant.version import __version__


def build_qat_variant(recipe, variant, exported, progress: Progress) -> bytes:
    """The full-integer .tflite bytes of `variant` (a QatVariant) for the recipe's exported model."""
    label = f"variant {variant.name!r} (qat)"
    if exported.keras_model is None:
        raise InputError(
            f"{label}: QAT fine-tunes Keras layers, and {recipe.model.path} is a SavedModel, which has none; "
            "point model.path at the .keras or .h5 file it was exported from, or use mode int8"
        )
    data = variant.training or recipe.calibration
    if data is None:
        raise InputError(f"{label}: needs labelled training data: add a `training` section to the variant "
                         "(or a `calibration` section to the recipe)")
    with progress.task(f"prepare {variant.name} (qat)") as task:
        model = prepare(exported.keras_model, scheme=weight_bits_scheme(variant.weight_bits))
        compile_for_qat(model, optimizer=variant.optimizer, learning_rate=variant.learning_rate, loss=variant.loss)
        task.advance()

    checkpoints = EpochCheckpoints(cache_dir() / "qat" / work_key(recipe, variant, exported, data))
    model, result = fine_tune(
        model, data, exported.input, epochs=variant.epochs, batch_size=variant.batch_size,
        label=f"fine-tune {variant.name} (qat)", progress=progress, checkpoints=checkpoints,
    )
    if result.loss is not None:
        accuracy = f", accuracy {result.accuracy:.4f}" if result.accuracy is not None else ""
        resumed = f" (resumed after epoch {result.resumed_after_epoch} of {result.epochs})" if result.resumed_after_epoch else ""
        progress.log(f"{label}: {result.epochs_trained} epoch(s) of {result.samples_per_epoch} samples trained{resumed}, "
                     f"last-epoch training loss {result.loss:.4f}{accuracy}")
    with progress.task(f"convert {variant.name} (qat)") as task:
        tflite = export(model, variant.input_type, variant.output_type,
                        input_shape=recipe.model.input_shape, name=variant.name)
        task.advance()
    if variant.weight_bits < 8:  # the converter stores <=4-bit fake-quant as INT4: check the file says so
        from edgequant.lowbit.pack import PackPlan
        from edgequant.lowbit.readback import check_packed

        check_packed(tflite, PackPlan(dense_bits=variant.weight_bits, conv_bits=variant.weight_bits), label=label)
    checkpoints.clear()
    return tflite


def work_key(recipe, variant, exported, data) -> str:
    """Names a fine-tune: same source model, settings and data -> same checkpoint folder."""
    source = exported.source_sha256 or _weights_sha256(exported.keras_model)
    payload = {
        "source": source,
        "input_shape": recipe.model.input_shape,
        "variant": variant.model_dump(mode="json"),
        "data": data.model_dump(mode="json"),
        "edgequant": __version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


def _weights_sha256(model) -> str:
    digest = hashlib.sha256()
    for w in model.get_weights():
        digest.update(w.tobytes())
    return digest.hexdigest()
