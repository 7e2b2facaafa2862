"""Small real recurrent models trained here on Fashion-MNIST, each image read as a sequence of 28 rows of 28 pixels.

`recurrent_model(path, kind)` trains one for 1 epoch on 1,000 training images (seeded) and saves it:
kind is "lstm", "gru", "bilstm" or "bigru", with "+mask" for a Masking layer in front (all-zero rows are
skipped: Fashion-MNIST's blank top and bottom rows), saved as `.keras` (Keras 3) or `.h5` (path's suffix;
`tf_keras=True` trains and saves it with tf_keras, Keras 2).
`sequence_files(folder)` writes the calibration and evaluation sets as .npy files a recipe reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TRAIN = 1000


def fashion_sequences(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 28 steps, 28 features) float32 in [0, 1], and the labels."""
    from edgequant.data.idx import load_fashion_mnist

    x, y = load_fashion_mnist(split)
    return x[:n, :, :, 0].astype(np.float32), y[:n]


def recurrent_model(path: Path, kind: str, *, tf_keras: bool = False, units: int = 16) -> Path:
    if tf_keras:
        import tf_keras as lib

        lib.utils.set_random_seed(0)
    else:
        import keras as lib

        lib.utils.set_random_seed(0)
    layers = lib.layers
    cell, _, mask = kind.partition("+")
    inputs = layers.Input((28, 28), name="rows")
    h = layers.Masking(0.0)(inputs) if mask else inputs
    recurrent = (layers.LSTM if cell.endswith("lstm") else layers.GRU)(units)
    h = (layers.Bidirectional(recurrent) if cell.startswith("bi") else recurrent)(h)
    outputs = layers.Dense(10, activation="softmax")(h)
    model = lib.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = fashion_sequences("train", TRAIN)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.save(path)
    return path


def sequence_files(folder: Path, *, calibration: int = 32, evaluation: int = 40) -> dict[str, Path]:
    """calib.npy (training images), eval.npy and eval_labels.npy (test images) under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    x, _ = fashion_sequences("train", calibration)
    xe, ye = fashion_sequences("test", evaluation)
    files = {"calib": folder / "calib.npy", "eval": folder / "eval.npy", "labels": folder / "eval_labels.npy"}
    np.save(files["calib"], x)
    np.save(files["eval"], xe)
    np.save(files["labels"], ye.astype(np.int64))
    return files


def sequence_recipe(model: Path, files: dict[str, Path], modes: list[str], **extra) -> dict:
    """A recipe (as the dict a YAML file holds) building `modes` of `model` on the sequence files."""
    return {
        "name": "recurrent",
        "model": {"path": str(model)},
        "calibration": {"source": {"type": "npy", "path": str(files["calib"])}},
        "evaluation": {"source": {"type": "npy", "path": str(files["eval"]), "labels": str(files["labels"])}},
        "benchmark": {"enabled": False},
        "variants": [{"name": m, "mode": m, **({"analyse_layers": False} if m == "int8" else {})} for m in modes],
        **extra,
    }
