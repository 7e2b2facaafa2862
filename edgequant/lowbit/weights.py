"""Ternary and binary weights for QAT, on tfmot's Quantizer / QuantizeConfig API (as edgequant.qat uses it).

    ternary  w -> s * {-1, 0, +1}: weights under 0.7 x mean|w| of their output channel become 0, the
             others sign(w) x s, s = the mean |w| of the kept ones (Ternary Weight Networks, Li et al. 2016)
    binary   w -> s * {-1, +1}: sign(w) x s, s = the channel's mean |w| (XNOR-Net, Rastegari et al. 2016)

Both pass gradients straight through to the float weights they shadow (straight-through
estimator). Scales are per output channel (the kernel's last axis), which is how the quantizer
packs them: one INT2 scale per channel equal to s, so the packed values are exactly -1, 0, +1.
Convolutions are trained with tfmot's own per-channel fake-quant at the bits they are packed
at (INT8 or INT4), so what is trained is what runs. Activations are not fake-quantized: the
packed model quantizes them to int8 at run time, per batch, from their real range.
"""

from __future__ import annotations

from edgequant.qat._tfmot import quantization_api

_api = quantization_api()
TERNARY_THRESHOLD = 0.7  # of the channel's mean |w|: TWN's approximation of the optimal threshold


def ternarize(w, binary: bool):
    """The ternary (or binary) weights of a float kernel, per output channel (last axis); TF or NumPy in, TF out."""
    import tensorflow as tf

    w = tf.convert_to_tensor(w)
    axes = list(range(len(w.shape) - 1))
    magnitude = tf.abs(w)
    if binary:
        scale = tf.reduce_mean(magnitude, axis=axes, keepdims=True)
        return tf.where(w >= 0, scale, -scale)
    threshold = TERNARY_THRESHOLD * tf.reduce_mean(magnitude, axis=axes, keepdims=True)
    kept = tf.cast(magnitude > threshold, w.dtype)
    scale = tf.reduce_sum(magnitude * kept, axis=axes, keepdims=True) / tf.maximum(
        tf.reduce_sum(kept, axis=axes, keepdims=True), 1.0)
    return tf.sign(w) * kept * scale


class TernaryWeightQuantizer(_api.quantizers.Quantizer):
    """Fake-quantizes a kernel to ternary (or binary) values; the float weights learn through it."""

    def __init__(self, binary: bool = False):
        self.binary = bool(binary)

    def build(self, tensor_shape, name, layer):
        return {}

    def __call__(self, inputs, training, weights, **kwargs):
        import tensorflow as tf

        return inputs + tf.stop_gradient(ternarize(inputs, self.binary) - inputs)

    def get_config(self):
        return {"binary": self.binary}

    def __eq__(self, other):
        return isinstance(other, TernaryWeightQuantizer) and other.binary == self.binary

    def __ne__(self, other):
        return not self == other


class KernelQuantizeConfig(_api.QuantizeConfig):
    """Quantize only a layer's kernel (`attribute`): `scheme` ternary, binary, or per-channel `bits`-bit
    fake-quant (tfmot's LastValueQuantizer, symmetric); activations and outputs stay float."""

    def __init__(self, scheme: str, attribute: str = "kernel", bits: int = 8):
        self.scheme, self.attribute, self.bits = scheme, attribute, bits
        if scheme in ("ternary", "binary"):
            self.quantizer = TernaryWeightQuantizer(binary=scheme == "binary")
        else:
            self.quantizer = _api.quantizers.LastValueQuantizer(
                num_bits=bits, per_axis=True, symmetric=True, narrow_range=True)

    def get_weights_and_quantizers(self, layer):
        return [(getattr(layer, self.attribute), self.quantizer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        setattr(layer, self.attribute, quantize_weights[0])

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {"scheme": self.scheme, "attribute": self.attribute, "bits": self.bits}


KERNELS = {"Dense": "kernel", "Conv2D": "kernel"}
"""Layers whose weights are trained low-bit, and the attribute holding them. Every other layer stays float
(DepthwiseConv2D too: the quantizer packs no depthwise weights for dynamic-range kernels)."""


def config_for(layer, *, scheme: str, conv_bits: int) -> KernelQuantizeConfig | None:
    """The QuantizeConfig of one tf_keras layer in a ternary/binary fine-tune, or None to leave it float."""
    kind = type(layer).__name__
    if kind not in KERNELS:
        return None
    if kind == "Dense":
        return KernelQuantizeConfig(scheme, "kernel")
    return KernelQuantizeConfig("channel", KERNELS[kind], conv_bits)


CUSTOM_OBJECTS = {"TernaryWeightQuantizer": TernaryWeightQuantizer, "KernelQuantizeConfig": KernelQuantizeConfig}
