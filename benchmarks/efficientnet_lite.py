"""EfficientNet-Lite, built with Keras layers from its published definition (random weights).

keras.applications has EfficientNet B0-B7 but not the Lite variants the MediaPipe and TFLite
benchmarks publish. Lite is B0's MBConv stages with three changes (tensorflow/tpu
models/official/efficientnet/lite/efficientnet_lite_builder.py): no squeeze-and-excitation,
ReLU6 instead of swish, and the stem (32 filters), the head (1280) and the repeats of the
first and last stage are not scaled. Weights do not change speed, so they are left random.
"""

from __future__ import annotations

import math

# (repeats, kernel, stride, expand ratio, filters in, filters out) of B0's seven stages
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
# name -> (width, depth, input side)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite2": (1.1, 1.2, 260),
            "efficientnet_lite4": (1.4, 1.8, 300)}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    filters *= width
    rounded = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * filters else int(rounded)


def conv_bn(x, filters: int, kernel: int, stride: int = 1, act: bool = True):
    """Conv, batch norm and (unless `act` is false) ReLU6: the convolution unit of the Lite models."""
    import tensorflow as tf

    layers = tf.keras.layers
    x = layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU(6.0)(x) if act else x


def stage_outputs(inputs, name: str) -> list:
    """The output of each of the seven MBConv stages of EfficientNet-Lite `name` on `inputs`
    (strides 2, 4, 8, 16, 16, 32, 32): the classifier's trunk and the detector's backbone."""
    import tensorflow as tf

    layers = tf.keras.layers
    width, depth, _ = VARIANTS[name]
    x = conv_bn(inputs, 32, 3, 2)
    outputs = []
    for i, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(STAGES):
        f_in, f_out = _round_filters(f_in, width), _round_filters(f_out, width)
        if 0 < i < len(STAGES) - 1:
            repeats = int(math.ceil(depth * repeats))
        if i == 0:
            f_in = 32
        for r in range(repeats):
            block_in, s = x, (stride if r == 0 else 1)
            cin = f_in if r == 0 else f_out
            if expand != 1:
                x = conv_bn(x, cin * expand, 1)
            x = layers.DepthwiseConv2D(kernel, s, padding="same", use_bias=False)(x)
            x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
            x = conv_bn(x, f_out, 1, act=False)
            if s == 1 and cin == f_out:
                x = layers.Add()([x, block_in])
        outputs.append(x)
    return outputs


def build(name: str, input_side: int | None = None):
    """The Keras model of EfficientNet-Lite `name` (1000 classes)."""
    import tensorflow as tf

    layers = tf.keras.layers
    side = input_side or VARIANTS[name][2]
    inputs = tf.keras.Input((side, side, 3))
    x = conv_bn(stage_outputs(inputs, name)[-1], 1280, 1)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(1000, activation="softmax")(x)
    return tf.keras.Model(inputs, outputs, name=name)
