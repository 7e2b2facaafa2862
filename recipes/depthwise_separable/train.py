"""Train a depthwise-separable Fashion-MNIST CNN without BatchNorm, for the int8 fixes benchmark.

    python recipes/depthwise_separable/train.py      # writes depthwise_separable_cnn.keras beside this file

MobileNet-style blocks (depthwise 3x3, then pointwise 1x1) with ReLU and ReLU6 layers and
no BatchNorm: nothing keeps the channels' ranges alike, the case cross-layer equalization
is for. The architecture was fixed before any quantization result was looked at. Seeded;
a few minutes on 2 CPU cores. Data: Debian's dataset-fashion-mnist, inputs in [0, 1].
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgequant.data.idx import load_fashion_mnist

HERE = Path(__file__).resolve().parent


def build_model():
    import keras
    from keras import layers

    he = {"kernel_initializer": "he_normal"}  # the default Glorot init let this BatchNorm-free stack die at once
    dw_he = {"depthwise_initializer": "he_normal"}
    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="stem", **he),
            layers.DepthwiseConv2D(3, padding="same", name="dw1", **dw_he),
            layers.ReLU(6.0, name="dw1_relu6"),
            layers.Conv2D(32, 1, name="pw1", **he),
            layers.ReLU(name="pw1_relu"),
            layers.MaxPooling2D(name="pool1"),
            layers.DepthwiseConv2D(3, padding="same", name="dw2", **dw_he),
            layers.ReLU(6.0, name="dw2_relu6"),
            layers.Conv2D(64, 1, name="pw2", **he),
            layers.ReLU(6.0, name="pw2_relu6"),
            layers.MaxPooling2D(name="pool2"),
            layers.DepthwiseConv2D(3, padding="same", name="dw3", **dw_he),
            layers.ReLU(name="dw3_relu"),
            layers.Conv2D(64, 1, activation="relu", name="pw3", **he),
            layers.GlobalAveragePooling2D(name="gap"),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="depthwise_separable_cnn",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "depthwise_separable_cnn.keras")
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy (10,000 images): {accuracy:.4f}")
    shipped = build_model()  # uncompiled: the file holds no optimizer state
    shipped.set_weights(model.get_weights())
    shipped.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
