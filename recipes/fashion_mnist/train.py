"""Train the small Fashion-MNIST CNN that the example recipe quantizes.

    python recipes/fashion_mnist/train.py            # writes fashion_mnist_cnn.keras beside this file

Data: Debian's dataset-fashion-mnist (60,000 train / 10,000 test images). Inputs are
28x28x1 floats in [0, 1] (the recipe's preprocess: scale 1/255), outputs are 10
class probabilities. Seeded; on 2 CPU cores it takes about two minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path


from edgequant.data.idx import load_fashion_mnist

HERE = Path(__file__).resolve().parent


def build_model():
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((28, 28, 1), name="image"),
            layers.Conv2D(16, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.MaxPooling2D(),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10, activation="softmax", name="probabilities"),
        ],
        name="fashion_mnist_cnn",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=HERE / "fashion_mnist_cnn.keras")
    args = parser.parse_args()

    import keras

    keras.utils.set_random_seed(0)
    x_train, y_train = load_fashion_mnist("train")
    x_test, y_test = load_fashion_mnist("test")
    model = build_model()
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=128, epochs=args.epochs, validation_split=0.1, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test accuracy (10,000 images): {accuracy:.4f}")
    shipped = build_model()  # uncompiled: the file holds no optimizer state, a third of the size
    shipped.set_weights(model.get_weights())
    shipped.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
