"""Wrap a float Keras model for quantization-aware training (tfmot's default 8-bit scheme).

Every layer is checked before tfmot sees it, so a layer tfmot cannot quantize is named in
the error together with what the user can do about it; tfmot's own messages name neither.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from edgequant.errors import InputError
from edgequant.qat._tfmot import quantization_api
from edgequant.qat.callbacks import accept_keras3_callbacks
from edgequant.qat.keras_bridge import to_tf_keras

# tfmot 0.8 quantize_aware_activation.QuantizeAwareActivation: the activations a Dense/Conv layer may carry.
KERNEL_LAYER_ACTIVATIONS = frozenset({"linear", "relu", "swish", "gelu", "softmax", "sigmoid", "tanh"})
# tfmot 0.8 Default8BitActivationQuantizeConfig: the activations an Activation layer may compute.
ACTIVATION_LAYER_ACTIVATIONS = frozenset({"linear", "relu", "relu6", "swish", "gelu", "softmax", "sigmoid", "tanh"})
# Layers tfmot handles through its graph transforms (BatchNormalization folded into the conv or dense
# before it, SeparableConv split in two) rather than through its registry.
_TRANSFORMED = frozenset({"BatchNormalization", "SeparableConv1D", "SeparableConv2D"})
_QAT_LAYERS = frozenset({"QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer"})


def is_qat_model(model) -> bool:
    """True for a model that `prepare` (or tfmot's quantize_apply) has already wrapped."""
    return any(type(layer).__name__ in _QAT_LAYERS for layer in getattr(model, "layers", []))


def prepare(
    model,
    *,
    layers: Iterable[str] | None = None,
    configs: Mapping[str, object] | None = None,
    custom_objects: Mapping[str, object] | None = None,
    scheme=None,
):
    """A tf_keras model with fake-quantized weights and activations, ready to compile and fit.

    model: a tf_keras model (Sequential or Functional), or a Keras 3 one, which is rebuilt in
        tf_keras with its weights (the float outputs are checked to match). A model whose layers
        the user already annotated with `annotate` is applied as it is.
    layers: names of the layers to quantize (default: all). The others stay float, and the
        converted model then holds float operators (export with full_integer=False).
    configs: {layer name: QuantizeConfig} for layers tfmot does not support or that need other
        settings, e.g. `qat.OutputQuantizeConfig()` for a Rescaling layer.
    custom_objects: your own QuantizeConfig (or layer) classes by name, which tfmot needs to
        clone the model; edgequant's configs are always known.
    scheme: a tfmot QuantizeScheme (default: tfmot's 8-bit one), e.g. `weight_bits_scheme(4)`.

    Compile the result with tf_keras objects or names ("adam", "sparse_categorical_crossentropy"):
    it is a tf_keras model, which Keras 3 optimizers cannot train.
    """
    api = quantization_api()
    if is_qat_model(model):
        return accept_keras3_callbacks(model)
    base = to_tf_keras(model)
    _check_graph_model(base)
    configs = dict(configs or {})
    if any(type(layer).__name__ == "QuantizeAnnotate" for layer in base.layers):
        if layers is not None or configs:
            raise InputError("the model already has annotated layers: pass either annotations or layers=/configs=")
        return _apply(base, api, custom_objects, scheme)

    candidates = [layer for layer in base.layers if type(layer).__name__ != "InputLayer"]
    names = [layer.name for layer in candidates]
    chosen = set(names) if layers is None else set(layers)
    unknown = sorted((chosen | set(configs)) - set(names))
    if unknown:
        raise InputError(f"the model has no layer {unknown[0]!r}; its layers are {', '.join(names)}")
    chosen |= set(configs)

    for layer in candidates:
        if layer.name in chosen and layer.name not in configs:
            reason = unsupported_reason(layer)
            if reason:
                raise InputError(reason)

    def annotate_chosen(layer):
        if layer.name not in chosen:
            return layer
        return api.quantize_annotate_layer(layer, configs.get(layer.name))

    import tf_keras

    annotated = tf_keras.models.clone_model(base, clone_function=annotate_chosen)
    return _apply(annotated, api, custom_objects, scheme)


def annotate(layer, config=None):
    """Mark one tf_keras layer for QAT (tfmot's quantize_annotate_layer), optionally with a QuantizeConfig.

    For a model written in tf_keras: annotate the layers to quantize while building it, then
    call `prepare(model)`.
    """
    return quantization_api().quantize_annotate_layer(layer, config)


def unsupported_reason(layer) -> str | None:
    """Why tfmot's default 8-bit scheme cannot quantize `layer` (a tf_keras layer), or None if it can."""
    kind = type(layer).__name__
    if hasattr(layer, "layers"):  # a model used as a layer
        return (f"layer {layer.name!r} is a nested model ({kind}): tfmot cannot quantize a model inside a model; "
                "call its layers directly in the outer model")
    if kind in _TRANSFORMED:
        return None
    if not _registry().supports(layer):
        return (f"layer {layer.name!r} ({kind}) is not supported by tfmot's 8-bit QAT; pass "
                f"configs={{{layer.name!r}: qat.OutputQuantizeConfig()}} to quantize only its output (layers without "
                f"weights, e.g. Rescaling), or configs={{{layer.name!r}: qat.NoOpQuantizeConfig()}} to keep it float "
                "(the .tflite is then not full-integer)")
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", type(activation).__name__)
    allowed = ACTIVATION_LAYER_ACTIVATIONS if kind == "Activation" else KERNEL_LAYER_ACTIVATIONS
    if name not in allowed:
        return (f"layer {layer.name!r} ({kind}) uses activation {name!r}, which tfmot's 8-bit QAT cannot quantize "
                f"(it can: {', '.join(sorted(allowed))}); use one of those"
                + (", e.g. as a separate layers.ReLU(6.0)" if name == "relu6" else "")
                + f", or keep the layer float with configs={{{layer.name!r}: qat.NoOpQuantizeConfig()}}")
    return None


def _check_graph_model(model) -> None:
    import tf_keras

    # tf_keras marks Sequential and Functional models (and subclasses built functionally) as graph networks.
    if not (isinstance(model, tf_keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise InputError(
            f"model {model.name!r} is a subclassed tf_keras model ({type(model).__name__}): tfmot can only wrap "
            "Sequential or Functional models; define it with tf_keras.Sequential or tf_keras.Model(inputs, outputs)"
        )


def _registry():
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    return default_8bit_quantize_registry.Default8BitQuantizeRegistry()


def weight_bits_scheme(bits: int):
    """tfmot's n-bit scheme: `bits`-bit per-channel weights, 8-bit activations (None for tfmot's default 8-bit)."""
    if bits == 8:
        return None
    from tensorflow_model_optimization.python.core.quantization.keras.experimental.default_n_bit import (
        default_n_bit_quantize_scheme,
    )

    return default_n_bit_quantize_scheme.DefaultNBitQuantizeScheme(num_bits_weight=bits, num_bits_activation=8)


def _apply(annotated, api, custom_objects, scheme=None):
    from edgequant.qat.configs import CUSTOM_OBJECTS

    try:
        with api.quantize_scope({**CUSTOM_OBJECTS, **(custom_objects or {})}):
            applied = api.quantize_apply(annotated) if scheme is None else api.quantize_apply(annotated, scheme)
            return accept_keras3_callbacks(applied)
    except RuntimeError as exc:  # tfmot: "Layer <name>:<class> is not supported. ..."
        match = re.match(r"Layer (\S+?):", str(exc))
        if match:
            raise InputError(f"layer {match.group(1)!r} is not supported by tfmot's 8-bit QAT; give it a "
                             "QuantizeConfig with configs={name: ...} (see qat.OutputQuantizeConfig)") from None
        raise
    except ValueError as exc:
        raise InputError(f"tfmot cannot wrap the model for QAT: {str(exc).strip().splitlines()[0]}") from None
