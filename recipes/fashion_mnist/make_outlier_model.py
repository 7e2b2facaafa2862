"""Make `fashion_mnist_outlier.keras`: the example CNN with one outlier channel, the same function in float.

    python recipes/fashion_mnist/make_outlier_model.py [--factor 100]

Outlier channels are a real cause of int8 loss (they come from batch-norm folding,
from training without weight decay, and in transformers from attention sinks): one
channel of a tensor carries values far larger than the others, so the tensor's one
int8 scale must stretch to cover it and every other channel loses resolution.
This model multiplies the weights and bias of one filter of the first convolution
by `factor` and divides the matching input channel of the second convolution by it. ReLU and
max-pooling commute with a positive scale, so the float model computes the same
outputs (checked below), but post-training int8 loses accuracy: the recipe
`recipes/fashion_mnist_mixed.yaml` uses it to show the automatic mixed-precision search.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--factor", type=float, default=100.0)
    parser.add_argument("--channel", type=int, default=None, help="default: the filter most active on test images")
    args = parser.parse_args()

    import keras

    from train import build_model, load

    source = keras.saving.load_model(HERE / "fashion_mnist_cnn.keras", compile=False)
    model = build_model()
    model.set_weights(source.get_weights())
    conv, consumer = model.layers[0], model.layers[2]  # conv(16) pool conv(32) pool flatten dense(64) dense(10)
    x, _ = load("test")
    if args.channel is None:  # a dead filter (ReLU always 0) would hide the outlier
        activations = keras.Model(model.inputs, conv.output).predict(x[:500], verbose=0)
        args.channel = int(activations.mean(axis=(0, 1, 2)).argmax())
    kernel, bias = conv.get_weights()
    kernel[..., args.channel] *= args.factor
    bias[args.channel] *= args.factor
    conv.set_weights([kernel, bias])
    w, b = consumer.get_weights()  # (3, 3, in_channels, out_channels)
    w[:, :, args.channel, :] /= args.factor
    consumer.set_weights([w, b])

    difference = np.abs(model.predict(x[:2000], verbose=0) - source.predict(x[:2000], verbose=0)).max()
    assert difference < 1e-4, f"not the same function: max difference {difference}"
    out = HERE / "fashion_mnist_outlier.keras"
    model.save(out)
    print(f"wrote {out}: channel {args.channel} of {conv.name} x{args.factor:g}; max float difference {difference:.2e}")


if __name__ == "__main__":
    main()
