"""Small real models with several inputs, several outputs or a dynamic axis, trained here on Fashion-MNIST.

- `two_input_model`: inputs `image` (28x28x1) and `row_means` (28: the image's mean per row); outputs
  `box` (the ink's bounding box, 4 regressed values) and `probs` (10 class probabilities). By name, `box`
  comes first: the output an evaluation that judges only the first output would read as a classifier.
- `sequence_tagger`: a 1-D CNN over a sequence of any length (`[None, 4]`: each image row as 4 column-block
  means), tagging every pair of rows (3 classes: no ink, some, much). Its output at length 1 is empty.
Each is trained for seconds on a few thousand real images and saved as .keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN = 3000


def fashion(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    from edgequant.data.idx import load_fashion_mnist

    x, y = load_fashion_mnist(split)
    return x[:n], y[:n]


def two_input_data(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"image": x.astype(np.float32), "row_means": x.mean(axis=(2, 3)).astype(np.float32)}


def ink_box(x: np.ndarray) -> np.ndarray:
    """Top, left, bottom, right of the pixels above 0.2, in [0, 1]."""
    boxes = []
    for img in x[..., 0] > 0.2:
        rows, cols = np.flatnonzero(img.any(axis=1)), np.flatnonzero(img.any(axis=0))
        boxes.append([rows[0], cols[0], rows[-1], cols[-1]] if rows.size else [0, 0, 0, 0])
    return np.asarray(boxes, np.float32) / 27


def two_input_model(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    x, y = fashion("train", TRAIN)
    image = keras.Input((28, 28, 1), name="image")
    rows = keras.Input((28,), name="row_means")
    h = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(image)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Concatenate()([h, keras.layers.Dense(16, activation="relu")(rows)])
    h = keras.layers.Dense(32, activation="relu")(h)
    box = keras.layers.Dense(4, name="box")(h)
    probs = keras.layers.Dense(10, activation="softmax", name="probs")(h)
    model = keras.Model([image, rows], [box, probs])
    model.compile("adam", ["mse", "sparse_categorical_crossentropy"])
    model.fit(two_input_data(x), [ink_box(x), y], epochs=3, batch_size=64, verbose=0)
    model.save(path)
    return path


def sequences(x: np.ndarray) -> np.ndarray:
    """Each image as a sequence of its 28 rows, each row as the means of its 4 blocks of 7 columns."""
    return x[..., 0].reshape(len(x), 28, 4, 7).mean(axis=3).astype(np.float32)


def sequence_tags(seq: np.ndarray) -> np.ndarray:
    """0: no ink in the row, 1: some, 2: much (by the row's mean)."""
    means = seq.mean(axis=2)
    return np.digitize(means, [0.05, 0.3]).astype(np.int64)


def sequence_tagger(path: Path) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    x, _ = fashion("train", TRAIN)
    seq = sequences(x)
    inputs = keras.Input((None, 4), name="rows")
    h = keras.layers.Conv1D(16, 3, padding="same", activation="relu")(inputs)
    h = keras.layers.MaxPooling1D(2)(h)  # one tag per pair of rows: a sequence of length 1 gives none
    tags = keras.layers.Conv1D(3, 1, activation="softmax", name="tags")(h)
    model = keras.Model(inputs, tags)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(seq, sequence_tags(seq)[:, 1::2], epochs=3, batch_size=64, verbose=0)
    model.save(path)
    return path
