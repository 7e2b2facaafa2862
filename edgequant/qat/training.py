"""The recipe's QAT fine-tune: streamed labelled batches, progress per batch, a checkpoint per epoch.

Data is never held whole in memory: batches come from `edgequant.data.iter_batches` and are
shuffled within blocks of `shuffle_block` samples (seeded per epoch), so memory stays bounded
whatever the size of the training set.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np

from edgequant.data.sources import describe
from edgequant.data.stream import InputSpec, iter_batches
from edgequant.errors import DataError, InputError
from edgequant.process.progress import NullProgress, Progress
from edgequant.qat.checkpoint import EpochCheckpoints, load
from edgequant.recipe.schema import DataSpec

_OPTIMIZERS = {"adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}


@dataclass
class FineTuneResult:
    epochs: int
    resumed_after_epoch: int  # 0 when the fine-tune started from the float weights
    samples_per_epoch: int | None  # None when every epoch was restored from a checkpoint
    loss: float | None  # mean training loss of the last epoch run here
    accuracy: float | None

    @property
    def epochs_trained(self) -> int:
        """Epochs run by this call: a resumed fine-tune counts only those after its checkpoint."""
        return self.epochs - self.resumed_after_epoch

    def to_dict(self) -> dict:
        return dict(asdict(self), epochs_trained=self.epochs_trained)


def compile_for_qat(model, *, optimizer: str = "adam", learning_rate: float = 1e-4,
                    loss: str = "sparse_categorical_crossentropy") -> None:
    """Compile a QAT (tf_keras) model with the recipe's optimizer name, learning rate and Keras loss name."""
    import tf_keras

    if optimizer not in _OPTIMIZERS:
        raise InputError(f"optimizer {optimizer!r}: expected one of {', '.join(_OPTIMIZERS)}")
    try:
        loss_fn = tf_keras.losses.get(loss)
    except ValueError:
        raise InputError(f"loss {loss!r} is not a Keras loss name (e.g. sparse_categorical_crossentropy)") from None
    metrics = ["accuracy"] if "crossentropy" in loss else []
    model.compile(
        optimizer=getattr(tf_keras.optimizers, _OPTIMIZERS[optimizer])(learning_rate=learning_rate),
        loss=loss_fn,
        metrics=metrics,
    )


def fine_tune(
    model,
    data: DataSpec,
    model_input: InputSpec | None,
    *,
    epochs: int,
    batch_size: int,
    label: str = "qat",
    progress: Progress | None = None,
    checkpoints: EpochCheckpoints | None = None,
    seed: int = 0,
    shuffle_block: int = 4096,
    custom_objects: dict | None = None,
):
    """Train a compiled QAT model for `epochs` epochs over `data`; returns (model, FineTuneResult).

    With `checkpoints`, the model is saved after each epoch and a later call resumes after the
    last saved epoch (the returned model is then the reloaded one, read with `custom_objects` known).
    """
    progress = progress or NullProgress()
    start = 0
    if checkpoints is not None and (latest := checkpoints.latest()) is not None:
        start, file = min(latest[0], epochs), latest[1]
        model = load(file, custom_objects)
        progress.log(f"{label}: resuming after epoch {start} from {file}")
    samples = data.samples
    loss = accuracy = None
    for epoch in range(start, epochs):
        total = math.ceil(samples / batch_size) if samples else None
        model.reset_metrics()
        seen = 0
        logs: dict = {}
        with progress.task(f"{label}: epoch {epoch + 1}/{epochs}", total=total) as task:
            for x, y in shuffled_batches(data, model_input, batch_size, seed=seed + epoch, block=shuffle_block):
                logs = model.train_on_batch(x, y, reset_metrics=False, return_dict=True)
                seen += len(x)
                task.advance()
        if seen == 0:
            raise DataError(f"{label}: the training data ({describe(data.source)}) yielded no samples")
        samples = seen
        loss, accuracy = _float(logs.get("loss")), _float(logs.get("accuracy"))
        if checkpoints is not None:
            checkpoints.save(model, epoch + 1)
    ran = start < epochs
    return model, FineTuneResult(epochs, start, samples if ran else None, loss, accuracy)


def shuffled_batches(
    data: DataSpec, model_input: InputSpec | None, batch_size: int, *, seed: int, block: int = 4096
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Labelled batches, shuffled within blocks of `block` samples; the last batch may be smaller."""
    rng = np.random.default_rng(seed)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    held = 0
    for x, y in iter_batches(data, model_input, min(batch_size, block), role="training"):
        if y is None:
            raise DataError(f"QAT needs labelled training data; {describe(data.source)} yields samples without labels")
        xs.append(x)
        ys.append(y)
        held += len(x)
        if held >= block:
            carry_x, carry_y = yield from _emit(np.concatenate(xs), np.concatenate(ys), batch_size, rng, keep_tail=True)
            xs, ys, held = [carry_x], [carry_y], len(carry_x)
    if held:
        yield from _emit(np.concatenate(xs), np.concatenate(ys), batch_size, rng, keep_tail=False)


def _emit(x: np.ndarray, y: np.ndarray, batch_size: int, rng, *, keep_tail: bool):
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    full = (len(x) // batch_size) * batch_size if keep_tail else len(x)
    for i in range(0, full, batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]
    return x[full:], y[full:]


def _float(value) -> float | None:
    return None if value is None else float(value)
