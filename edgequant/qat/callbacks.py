"""Keras 3 callbacks on the tf_keras models QAT trains.

`prepare` returns a tf_keras model (tfmot works only with tf_keras), but a Keras 3 user
passes Keras 3 callbacks: `keras.callbacks.EarlyStopping`, `ModelCheckpoint`, `CSVLogger`,
their own `keras.callbacks.Callback` subclass. tf_keras's fit calls private hooks those
objects do not have. So the QAT model's `fit`, `evaluate` and `predict` wrap each Keras 3
callback in a tf_keras callback that forwards every hook to it; the Keras 3 callback then
sees the tf_keras model as its `model`, which has what the standard callbacks use
(`stop_training`, `get_weights`, `save`, `save_weights`, `optimizer.learning_rate`).

A few Keras 3 callbacks reach into Keras 3 internals a tf_keras model does not have
(`REFUSED`): they are refused before training, with the tf_keras equivalent to use.
"""

from __future__ import annotations

import functools

from edgequant.errors import InputError

# Keras 3 callback class name -> what to use instead with a tf_keras model.
REFUSED = {
    # It sets Keras 3's model._initial_epoch, which tf_keras's fit never reads: a resumed run would start at epoch 0.
    "BackupAndRestore": "tf_keras.callbacks.BackupAndRestore",
    # It swaps Keras 3 optimizer internals (_trainable_variables) that tf_keras optimizers do not have.
    "SwapEMAWeights": "a tf_keras optimizer with use_ema=True, which tf_keras applies at the end of fit",
    "OrbaxCheckpoint": "tf_keras.callbacks.ModelCheckpoint",
}
_BATCH_HOOKS = {
    "train": ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end"),
    "test": ("on_test_batch_begin", "on_test_batch_end"),
    "predict": ("on_predict_batch_begin", "on_predict_batch_end"),
}
_HOOKS = (
    "on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
    "on_predict_begin", "on_predict_end", *(hook for hooks in _BATCH_HOOKS.values() for hook in hooks),
)


def accept_keras3_callbacks(model):
    """Let `model` (a tf_keras model) take Keras 3 callbacks in fit, evaluate and predict. Returns `model`."""
    for method in ("fit", "evaluate", "predict"):
        bound = getattr(type(model), method).__get__(model)
        wrapper = functools.wraps(bound)(functools.partial(_with_adapted_callbacks, bound))
        # object.__setattr__: a Keras model tracks what is set on it, and a method is not model state.
        object.__setattr__(model, method, wrapper)
    return model


def adapt_callbacks(callbacks):
    """The callbacks with each Keras 3 one wrapped for tf_keras; raises InputError for one that cannot work."""
    if not isinstance(callbacks, (list, tuple)):  # None, or tf_keras's own CallbackList (fit calls evaluate with it)
        return callbacks
    keras3_callback = _keras3_callback_class()
    adapted = []
    for callback in callbacks:
        if keras3_callback is None or not isinstance(callback, keras3_callback):
            adapted.append(callback)
            continue
        name = type(callback).__name__
        if name in REFUSED and type(callback).__module__.startswith("keras."):
            raise InputError(f"keras.callbacks.{name} cannot drive a tf_keras QAT model: use {REFUSED[name]}")
        adapted.append(_adapter_class()(callback))
    return adapted


def _with_adapted_callbacks(method, *args, callbacks=None, **kwargs):
    return method(*args, callbacks=adapt_callbacks(callbacks), **kwargs)


def _keras3_callback_class():
    try:
        import keras
    except ImportError:  # no Keras 3 in this environment: nothing to adapt
        return None
    if not keras.__version__.startswith("3."):
        return None
    return keras.callbacks.Callback


@functools.cache
def _adapter_class():
    import tf_keras

    class Keras3Callback(tf_keras.callbacks.Callback):
        """A tf_keras callback that forwards every hook to a Keras 3 callback."""

        def __init__(self, callback):
            super().__init__()
            self.callback = callback

        def set_model(self, model):
            super().set_model(model)
            _resolve_auto_mode(self.callback, model)
            self.callback.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            self.callback.set_params(params)

        def _implements_train_batch_hooks(self):
            return _overrides(self.callback, _BATCH_HOOKS["train"])

        def _implements_test_batch_hooks(self):
            return _overrides(self.callback, _BATCH_HOOKS["test"])

        def _implements_predict_batch_hooks(self):
            return _overrides(self.callback, _BATCH_HOOKS["predict"])

    for hook in _HOOKS:
        setattr(Keras3Callback, hook, _forward(hook))
    return Keras3Callback


def _forward(hook: str):
    def forward(self, *args, **kwargs):
        return getattr(self.callback, hook)(*args, **kwargs)

    forward.__name__ = hook
    return forward


def _overrides(callback, hooks) -> bool:
    import keras

    return any(getattr(type(callback), h) is not getattr(keras.callbacks.Callback, h) for h in hooks)


def _resolve_auto_mode(callback, model) -> None:
    """Keras 3's monitor callbacks in mode "auto" find a metric's direction among Keras 3 metric objects, which a
    tf_keras model does not have; decide it as tf_keras does: accuracies and AUC go up, everything else down."""
    monitor, mode = getattr(callback, "monitor", None), getattr(callback, "mode", None)
    if mode != "auto" or not isinstance(monitor, str) or getattr(callback, "monitor_op", None) is not None:
        return
    if not hasattr(callback, "_set_monitor_op"):  # not a MonitorCallback
        return
    name = monitor.removeprefix("val_")
    callback.mode = "max" if ("acc" in name or name.startswith(("auc", "fmeasure"))) else "min"
