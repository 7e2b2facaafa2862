"""Train the "wide range" Fashion-MNIST CNN: a model on which post-training int8 loses accuracy.

    python recipes/wide_range/train.py          # writes wide_range_cnn.keras beside this file

A small CNN without BatchNorm, trained normally (seeded), then given one channel with a
very wide dynamic range: the first convolution's most active channel is multiplied by
SCALE and the second convolution's weights for that channel divided by SCALE. ReLU and
max-pooling commute with a positive scale, so the float model computes the same function
(checked below), but that channel's activations are now ~SCALE times larger than the
others'. Networks trained without BatchNorm or weight decay have nothing that keeps
channel ranges equal (Nagel et al. 2019, "Data-Free Quantization"), and int8 quantizes an
activation tensor with one scale for all its channels: the narrow channels keep only a
few levels. Post-training int8 loses accuracy here; QAT learns around it. The widening
is deliberate, to make the effect visible on a model this small: the plain small models
trained here (with and without depthwise layers) lost at most half a point.

Data: Debian's dataset-fashion-mnist. Inputs 28x28x1 floats in [0, 1] (preprocess scale
1/255), outputs 10 class probabilities. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edgequant.data.idx import load_fashion_mnist

HERE = Path(__file__).resolve().parent
SCALE = 50.0


def build_model():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"),
            layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"),
            layers.MaxPooling2D(name="pool2"),
            layers.Flatten(name="flatten"),
            layers.Dense(32, activation="relu", name="dense"),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="wide_range_cnn",
    )


def widen_one_channel(model, x_probe: np.ndarray, scale: float = SCALE) -> int:
    """Multiply conv1's most active channel by `scale` and undo it in conv2; returns the channel index."""
    import keras

    conv1, conv2 = model.get_layer("conv1"), model.get_layer("conv2")
    activity = keras.Model(model.inputs, conv1.output).predict(x_probe, verbose=0).mean(axis=(0, 1, 2))
    channel = int(np.argmax(activity))
    kernel1, bias1 = conv1.get_weights()
    kernel2, bias2 = conv2.get_weights()
    kernel1[..., channel] *= scale
    bias1[channel] *= scale
    kernel2[:, :, channel, :] /= scale
    conv1.set_weights([kernel1, bias1])
    conv2.set_weights([kernel2, bias2])
    return channel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--scale", type=float, default=SCALE)
    parser.add_argument("--out", type=Path, default=HERE / "wide_range_cnn.keras")
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2)

    shipped = build_model()  # uncompiled: the file holds no optimizer state
    shipped.set_weights(model.get_weights())
    before = shipped.predict(x_test, verbose=0)
    channel = widen_one_channel(shipped, x_train[:1000], args.scale)
    after = shipped.predict(x_test, verbose=0)
    print(f"widened conv1 channel {channel} by {args.scale:g}; "
          f"float outputs changed by at most {np.abs(after - before).max():.2e}")
    accuracy = float((after.argmax(axis=1) == y_test).mean())
    print(f"float test accuracy (10,000 images): {accuracy:.4f}")
    shipped.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
