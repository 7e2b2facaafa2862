"""QuantizeConfigs for layers tfmot's default 8-bit scheme does not know.

Give one to `qat.prepare(model, configs={"layer_name": ...})` (or to `qat.annotate`).
Both are plain tfmot `QuantizeConfig`s: a model that uses them reloads inside
`qat.quantize_scope()`, which knows their names.

    OutputQuantizeConfig  no weights quantized, the output fake-quantized to int8. For layers
                          without weights that the converter lowers to int8 builtins
                          (Rescaling -> MUL/ADD, Multiply -> MUL): the model stays full-integer.
    NoOpQuantizeConfig    nothing quantized: the layer stays float, and the converted model
                          holds float operators (export with full_integer=False).
"""

from __future__ import annotations

from edgequant.qat._tfmot import quantization_api

_api = quantization_api()


class NoOpQuantizeConfig(_api.QuantizeConfig):
    """Leave a layer in float: no weight, activation or output quantizers."""

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


class OutputQuantizeConfig(NoOpQuantizeConfig):
    """Quantize only a layer's output: 8-bit, asymmetric, range tracked by moving average (as tfmot's default)."""

    def get_output_quantizers(self, layer):
        return [_api.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]


CUSTOM_OBJECTS = {cls.__name__: cls for cls in (NoOpQuantizeConfig, OutputQuantizeConfig)}
