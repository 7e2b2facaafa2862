"""A Keras 3 model rebuilt in tf_keras (Keras 2), the only Keras tfmot can wrap for QAT.

The rebuild reads the Keras 3 model's config (Sequential or Functional), creates the same
standard layers in tf_keras, calls them on the same graph and copies every weight; it then
runs both models on the same random batch and refuses a rebuild whose outputs differ.
What cannot be rebuilt (a subclassed model, a nested model, a custom layer, a Keras 3
setting tf_keras lacks) raises an InputError that names the layer and what to do.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from typing import Any

import numpy as np

from edgequant.errors import BuildError, InputError

# Keyword arguments every tf_keras layer takes on top of its own (tf_keras Layer.__init__).
_BASE_LAYER_KWARGS = frozenset(
    {"trainable", "name", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape", "batch_size",
     "weights", "activity_regularizer", "autocast", "implementation"}
)
# Settings that Keras 3 renamed: (class, Keras 3 name) -> tf_keras name.
_RENAMED = {("LeakyReLU", "negative_slope"): "alpha"}
# Keras 3 module of a serialized object -> the tf_keras module holding the same classes.
_OBJECT_MODULES = {"keras.initializers": "initializers", "keras.regularizers": "regularizers",
                   "keras.constraints": "constraints"}

OUTPUT_RTOL = 1e-5
"""The rebuilt model must match the Keras 3 model's float outputs to this relative tolerance
(both run the same float32 TensorFlow kernels; differences come only from op ordering)."""


def is_keras3_model(model) -> bool:
    return any(c.__module__.startswith("keras.") for c in type(model).__mro__)


def _subclasses_tf_keras(model) -> bool:
    return any(c.__module__.startswith("tf_keras.") for c in type(model).__mro__)


def to_tf_keras(model, *, check: bool = True):
    """`model` as a tf_keras model: a tf_keras model as it is, a Keras 3 one rebuilt with its weights.

    check: compare the float outputs of both models on one random batch (relative tolerance
    OUTPUT_RTOL) and raise BuildError if they differ.
    """
    if _subclasses_tf_keras(model):
        return model
    if not is_keras3_model(model):
        raise InputError(f"{type(model).__name__} is not a Keras model; QAT needs a Keras 3 or tf_keras model")
    kind = type(model).__name__
    if kind not in ("Sequential", "Functional"):
        raise InputError(
            f"model {model.name!r} is a subclassed Keras model ({kind}): QAT can only rebuild Sequential or "
            "Functional models in tf_keras; define it with keras.Sequential or keras.Model(inputs, outputs), "
            "or build it in tf_keras and pass that model to qat.prepare"
        )
    import tf_keras

    config = model.get_config()
    rebuilt = _rebuild_sequential(config, tf_keras) if kind == "Sequential" else _rebuild_functional(config, tf_keras)
    _copy_weights(model, rebuilt)
    if check:
        check_same_outputs(model, rebuilt)
    return rebuilt


# --- layers --------------------------------------------------------------------------------------


def _layer_name(entry: dict) -> str:
    return entry.get("name") or entry["config"].get("name", "?")


def _convert_layer(entry: dict, tf_keras):
    name, class_name = _layer_name(entry), entry["class_name"]
    if class_name in ("Functional", "Sequential", "Model") or entry.get("module", "").startswith("keras.src.models"):
        raise InputError(
            f"layer {name!r} is a nested model ({class_name}): tfmot cannot quantize a model inside a model; "
            "call the inner model's layers directly in the outer model (one flat Sequential or Functional model)"
        )
    if entry.get("module") != "keras.layers" or entry.get("registered_name") not in (None, class_name):
        custom = entry.get("registered_name") or f"{entry.get('module')}.{class_name}"
        raise InputError(
            f"layer {name!r} is a custom layer ({custom}): only Keras's own layers can be rebuilt in tf_keras; "
            "write the model in tf_keras (with a tfmot QuantizeConfig for that layer) and pass it to qat.prepare"
        )
    cls = getattr(tf_keras.layers, class_name, None)
    if cls is None:
        raise InputError(f"layer {name!r} ({class_name}) has no tf_keras equivalent, so the model cannot do QAT")
    config = _translate_config(entry["config"], cls, class_name, name, tf_keras)
    try:
        return cls.from_config(config)
    except (TypeError, ValueError) as exc:
        raise InputError(f"layer {name!r} ({class_name}) cannot be rebuilt in tf_keras: {_first_line(exc)}") from None


def _translate_config(config: dict, cls, class_name: str, layer: str, tf_keras) -> dict:
    accepted = _accepted_kwargs(cls) | _BASE_LAYER_KWARGS
    out: dict[str, Any] = {}
    for key, value in config.items():
        key = _RENAMED.get((class_name, key), key)
        if key == "dtype":
            value = _dtype_name(value)
        elif isinstance(value, dict) and "class_name" in value:
            value = _translate_object(value, f"{layer}.{key}", tf_keras)
        if key not in accepted:
            if _is_unset(value):
                continue  # a Keras 3 option tf_keras lacks, left at its off value (quantization_config=None...)
            raise InputError(
                f"layer {layer!r} ({class_name}) sets {key}={value!r}, a Keras 3 option tf_keras does not have; "
                "remove it from the model to do QAT"
            )
        out[key] = value
    return out


def _translate_object(value: dict, where: str, tf_keras):
    """A Keras 3 serialized initializer/regularizer/constraint as the tf_keras dict form."""
    module = value.get("module")
    if module == "keras" and value["class_name"] == "DTypePolicy":
        return _dtype_name(value)
    if module not in _OBJECT_MODULES or value.get("registered_name") not in (None, value["class_name"]):
        raise InputError(
            f"{where} is a custom object ({value.get('registered_name') or value['class_name']}) that cannot be "
            "rebuilt in tf_keras; use a built-in one or write the model in tf_keras"
        )
    cls = getattr(getattr(tf_keras, _OBJECT_MODULES[module]), value["class_name"], None)
    if cls is None:
        raise InputError(f"{where}: {value['class_name']} has no tf_keras equivalent")
    accepted = _accepted_kwargs(cls)
    inner = {}
    for key, item in (value.get("config") or {}).items():
        if key in accepted:
            inner[key] = item
        elif not _is_unset(item):
            raise InputError(f"{where}: {value['class_name']}({key}={item!r}) has no tf_keras equivalent")
    return {"class_name": value["class_name"], "config": inner}


def _accepted_kwargs(cls) -> set[str]:
    """Keyword arguments `cls(...)` accepts, following **kwargs up the class hierarchy."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    names.discard("self")
    return names


def _dtype_name(value) -> str | None:
    if isinstance(value, dict):  # Keras 3 DTypePolicy
        return value.get("config", {}).get("name")
    return value


def _is_unset(value) -> bool:
    return value is None or value is False or value in ({}, [], ())


# --- graphs --------------------------------------------------------------------------------------


def _input(entry: dict, tf_keras):
    config = entry["config"]
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    return tf_keras.Input(batch_shape=tuple(shape), dtype=_dtype_name(config.get("dtype")), name=_layer_name(entry))


def _rebuild_sequential(config: dict, tf_keras):
    entries = list(config["layers"])
    if entries and entries[0]["class_name"] == "InputLayer":
        head = _input(entries.pop(0), tf_keras)
    elif config.get("build_input_shape"):
        head = tf_keras.Input(batch_shape=tuple(config["build_input_shape"]))
    else:
        raise InputError(f"model {config.get('name')!r} has no input shape: build it or start it with keras.Input")
    layers = [_convert_layer(e, tf_keras) for e in entries]
    return tf_keras.Sequential([head, *layers], name=config.get("name"))


def _rebuild_functional(config: dict, tf_keras):
    import tensorflow as tf

    tensors: dict[tuple[str, int, int], Any] = {}
    calls: dict[str, int] = defaultdict(int)

    def resolve(value):
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            history = tuple(value["config"]["keras_history"])
            return tensors[history]
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, tuple):
            return tuple(resolve(v) for v in value)
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        return value

    for entry in config["layers"]:
        name = _layer_name(entry)
        if entry["class_name"] == "InputLayer":
            tensors[(name, 0, 0)] = _input(entry, tf_keras)
            continue
        layer = _convert_layer(entry, tf_keras)
        for node in entry.get("inbound_nodes", []):
            outputs = layer(*resolve(node.get("args", [])), **resolve(node.get("kwargs", {})))
            for index, tensor in enumerate(tf.nest.flatten(outputs)):
                tensors[(name, calls[name], index)] = tensor
            calls[name] += 1

    def endpoints(spec):
        specs = [spec] if spec and isinstance(spec[0], str) else spec
        return [tensors[tuple(s)] for s in specs]

    inputs, outputs = endpoints(config["input_layers"]), endpoints(config["output_layers"])
    return tf_keras.Model(
        inputs[0] if len(inputs) == 1 else inputs, outputs[0] if len(outputs) == 1 else outputs,
        name=config.get("name"),
    )


# --- weights and the check -----------------------------------------------------------------------


def _copy_weights(source, target) -> None:
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        twin = target.get_layer(layer.name)
        expected = [tuple(w.shape) for w in twin.get_weights()]
        given = [tuple(w.shape) for w in weights]
        if expected != given:
            raise InputError(
                f"layer {layer.name!r} ({type(layer).__name__}): its Keras 3 weights {given} do not fit the tf_keras "
                f"layer's {expected}, so the model cannot be rebuilt for QAT"
            )
        twin.set_weights(weights)


def check_same_outputs(keras3_model, tf_keras_model, *, rtol: float = OUTPUT_RTOL, seed: int = 0) -> float:
    """Largest |difference| between the two models' outputs on one seeded random batch; BuildError if too large."""
    batch = _random_batch(tf_keras_model, seed)
    expected = [np.asarray(t) for t in _flat(keras3_model(batch, training=False))]
    actual = [np.asarray(t) for t in _flat(tf_keras_model(batch, training=False))]
    worst = 0.0
    for a, b in zip(expected, actual):
        scale = max(1.0, float(np.abs(a).max()))
        diff = float(np.abs(a - b).max())
        worst = max(worst, diff)
        if diff > rtol * scale:
            raise BuildError(
                f"the tf_keras rebuild of model {keras3_model.name!r} does not compute what the Keras 3 model does "
                f"(max |difference| {diff:.3g} on a random batch); please report it with the model's config"
            )
    return worst


def _random_batch(model, seed: int) -> np.ndarray:
    spec = model.inputs[0]
    shape = [4, *[d if d is not None else 32 for d in spec.shape[1:]]]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(spec.dtype.name if hasattr(spec.dtype, "name") else spec.dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, size=shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _flat(outputs) -> list:
    if isinstance(outputs, dict):
        return [outputs[k] for k in sorted(outputs)]
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
