"""Small models of kinds edgequant had not been tried on, trained here for a few steps so their outputs are not
degenerate, and the data (.npy/.npz) to calibrate and evaluate them.

`BUILDERS[kind](folder)` builds one kind, saves it under `folder` and writes its data there; it returns a
`Made(model, calib, eval)` of paths. Text kinds read token ids whose label is a function of the tokens (which of
four id ranges is commonest), image kinds read Fashion-MNIST padded to 32x32, so every model learns something real.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VOCAB, STEPS, TEXT_CLASSES = 64, 16, 4
TRAIN = 1024


@dataclass(frozen=True)
class Made:
    model: Path
    calib: Path
    eval: Path


def token_data(n: int, seed: int = 0, dtype=np.int32) -> tuple[np.ndarray, np.ndarray]:
    """Token ids in [1, VOCAB); the label is which quarter of the vocabulary the ids fall in most often."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, TEXT_CLASSES, n)
    ids = rng.integers(1, VOCAB, (n, STEPS))
    favoured = rng.random((n, STEPS)) < 0.5  # half the tokens come from the label's quarter
    quarter = VOCAB // TEXT_CLASSES
    ids = np.where(favoured, y[:, None] * quarter + rng.integers(0, quarter, (n, STEPS)), ids)
    return np.clip(ids, 1, VOCAB - 1).astype(dtype), y


def fashion32(split: str, n: int, channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST padded to 32x32, float32 in [0, 1], with `channels` copies of the grey channel."""
    from edgequant.data.idx import load_fashion_mnist

    x, y = load_fashion_mnist(split)
    x = np.pad(x[:n], ((0, 0), (2, 2), (2, 2), (0, 0)))
    return np.repeat(x, channels, axis=3).astype(np.float32), y[:n]


def _save_data(folder: Path, calib, evaluation) -> tuple[Path, Path]:
    paths = []
    for name, data in (("calib", calib), ("eval", evaluation)):
        if isinstance(data, dict):
            path = folder / f"{name}.npz"
            np.savez(path, **data)
        else:
            path = folder / f"{name}.npy"
            np.save(path, data, allow_pickle=False)
        paths.append(path)
    return paths[0], paths[1]


def _fit(model, x, y, loss, epochs: int = 2):
    model.compile("adam", loss)
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model


def _keras():
    import keras

    keras.utils.set_random_seed(0)
    return keras


def _tf_keras():
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return tf_keras


def _text(folder: Path, name: str, lib, body, suffix: str, dtype=np.int32, input_dtype: str = "int32") -> Made:
    x, y = token_data(TRAIN, dtype=dtype)
    ids = lib.Input((STEPS,), dtype=input_dtype, name="ids")
    h = lib.layers.Embedding(VOCAB, 16)(ids)
    out = lib.layers.Dense(TEXT_CLASSES, activation="softmax")(body(lib, h))
    model = _fit(lib.Model(ids, out), x, y, "sparse_categorical_crossentropy", epochs=3)
    path = folder / f"{name}{suffix}"
    model.save(path)
    calib, evaluation = _save_data(folder, token_data(64, 1, dtype)[0], token_data(100, 2, dtype)[0])
    return Made(path, calib, evaluation)


def embed_gap(folder: Path) -> Made:
    return _text(folder, "embed_gap", _keras(), lambda lib, h: lib.layers.GlobalAveragePooling1D()(h), ".keras")


def embed_gap_h5(folder: Path) -> Made:
    return _text(folder, "embed_gap", _tf_keras(), lambda lib, h: lib.layers.GlobalAveragePooling1D()(h), ".h5")


def embed_lstm(folder: Path) -> Made:
    return _text(folder, "embed_lstm", _keras(), lambda lib, h: lib.layers.LSTM(16)(h), ".keras")


def embed_gru_h5(folder: Path) -> Made:
    return _text(folder, "embed_gru", _tf_keras(), lambda lib, h: lib.layers.GRU(16)(h), ".h5")


def embed_int64(folder: Path) -> Made:
    return _text(folder, "embed_int64", _keras(), lambda lib, h: lib.layers.GlobalAveragePooling1D()(h), ".keras",
                 dtype=np.int64, input_dtype="int64")


def transformer(folder: Path) -> Made:
    keras = _keras()
    x, y = token_data(TRAIN)
    ids = keras.Input((STEPS,), dtype="int32", name="ids")
    h = keras.layers.Embedding(VOCAB, 16)(ids)
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    h = keras.layers.LayerNormalization()(h + attended)
    ff = keras.layers.Dense(16)(keras.layers.Dense(32, activation="relu")(h))
    h = keras.layers.LayerNormalization()(h + ff)
    out = keras.layers.Dense(TEXT_CLASSES, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h))
    model = _fit(keras.Model(ids, out), x, y, "sparse_categorical_crossentropy", epochs=3)
    path = folder / "transformer.keras"
    model.save(path)
    calib, evaluation = _save_data(folder, token_data(64, 1)[0], token_data(100, 2)[0])
    return Made(path, calib, evaluation)


def _images(folder: Path, channels: int = 1) -> tuple[np.ndarray, np.ndarray, Path, Path]:
    x, y = fashion32("train", TRAIN, channels)
    xe, _ = fashion32("test", 100, channels)
    calib, evaluation = _save_data(folder, x[:64], xe)
    return x, y, calib, evaluation


def unet(folder: Path) -> Made:
    """Per-pixel: the ink mask (pixel > 0.3), as 2-class softmax per pixel."""
    keras = _keras()
    x, _, calib, evaluation = _images(folder)
    mask = (x[..., 0] > 0.3).astype(np.int64)
    inputs = keras.Input((32, 32, 1))
    c1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    c2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(c1))
    c3 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(c2))
    u2 = keras.layers.Conv2DTranspose(16, 2, strides=2)(c3)
    u2 = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.Concatenate()([u2, c2]))
    u1 = keras.layers.UpSampling2D()(u2)
    u1 = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(keras.layers.Concatenate()([u1, c1]))
    out = keras.layers.Conv2D(2, 1, activation="softmax")(u1)
    model = _fit(keras.Model(inputs, out), x, mask, "sparse_categorical_crossentropy")
    path = folder / "unet.keras"
    model.save(path)
    return Made(path, calib, evaluation)


def _classifier(folder: Path, name: str, lib, body, channels: int = 1, suffix: str = ".keras", epochs: int = 2,
                pool: bool = True) -> Made:
    """A 10-class softmax on `body`'s features (global-average-pooled when `pool`), fitted on Fashion-MNIST."""
    x, y, calib, evaluation = _images(folder, channels)
    inputs = lib.Input((32, 32, channels))
    features = body(lib, inputs)
    if pool:
        features = lib.layers.GlobalAveragePooling2D()(features)
    out = lib.layers.Dense(10, activation="softmax")(features)
    model = _fit(lib.Model(inputs, out), x, y, "sparse_categorical_crossentropy", epochs=epochs)
    path = folder / f"{name}{suffix}"
    model.save(path)
    return Made(path, calib, evaluation)


def near_tied(folder: Path) -> Made:
    """Eight filters, pooled, fitted for 6 epochs: its class probabilities stay close to one another (the top two
    often within a few thousandths) while its top-1 depends on the image."""
    return _classifier(folder, "near_tied", _keras(),
                       lambda lib, h: lib.layers.Conv2D(8, 3, strides=2, activation="relu")(h), epochs=6)


def well_separated(folder: Path) -> Made:
    """A one-hidden-layer perceptron on the pixels, fitted for 30 epochs: confident, its best class far ahead
    of the next."""
    return _classifier(folder, "well_separated", _keras(),
                       lambda lib, h: lib.layers.Dense(64, activation="relu")(lib.layers.Flatten()(h)), epochs=30,
                       pool=False)


def separable(folder: Path) -> Made:
    def body(lib, h):
        h = lib.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
        h = lib.layers.SeparableConv2D(16, 3, activation="relu")(h)
        return lib.layers.SeparableConv2D(32, 3, strides=2, activation="relu")(h)
    return _classifier(folder, "separable", _keras(), body)


def separable_h5(folder: Path) -> Made:
    def body(lib, h):
        h = lib.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
        return lib.layers.SeparableConv2D(16, 3, activation="relu")(h)
    return _classifier(folder, "separable", _tf_keras(), body, suffix=".h5")


def groupnorm(folder: Path) -> Made:
    def body(lib, h):
        h = lib.layers.Conv2D(16, 3, strides=2)(h)
        h = lib.layers.Activation("relu")(lib.layers.GroupNormalization(groups=4)(h))
        h = lib.layers.Conv2D(32, 3, strides=2)(h)
        return lib.layers.Activation("relu")(lib.layers.GroupNormalization(groups=8)(h))
    return _classifier(folder, "groupnorm", _keras(), body)


def preprocessing(folder: Path) -> Made:
    """Raw 0..255 RGB 40x40 pixels in: Resizing to 32x32, Rescaling 1/255, Normalization (adapted) inside."""
    keras = _keras()
    x, y = fashion32("train", TRAIN, 3)
    raw = lambda a: np.round(np.pad(a, ((0, 0), (4, 4), (4, 4), (0, 0))) * 255).astype(np.float32)  # noqa: E731
    norm = keras.layers.Normalization()
    norm.adapt(x[:256])
    inputs = keras.Input((40, 40, 3))
    h = keras.layers.Resizing(32, 32)(inputs)
    h = norm(keras.layers.Rescaling(1 / 255)(h))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = _fit(keras.Model(inputs, out), raw(x), y, "sparse_categorical_crossentropy")
    path = folder / "preprocessing.keras"
    model.save(path)
    xe, _ = fashion32("test", 100, 3)
    calib, evaluation = _save_data(folder, raw(x[:64]).astype(np.uint8), raw(xe).astype(np.uint8))
    return Made(path, calib, evaluation)


def uint8_image(folder: Path) -> Made:
    """A model whose input is uint8 pixels: it casts and rescales them itself."""
    keras = _keras()
    x, y = fashion32("train", TRAIN)
    as_u8 = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    inputs = keras.Input((32, 32, 1), dtype="uint8")
    h = keras.layers.Rescaling(1 / 255)(keras.layers.Identity(dtype="float32")(inputs))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
    h = keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling2D()(h))
    model = _fit(keras.Model(inputs, out), as_u8(x), y, "sparse_categorical_crossentropy", epochs=8)
    path = folder / "uint8_image.keras"
    model.save(path)
    xe, _ = fashion32("test", 100)
    calib, evaluation = _save_data(folder, as_u8(x[:64]), as_u8(xe))
    return Made(path, calib, evaluation)


def time_distributed(folder: Path) -> Made:
    """Four 16x16 crops of an image as frames: TimeDistributed(Conv2D) per frame, then pooled over frames."""
    keras = _keras()
    x, y = fashion32("train", TRAIN)

    def frames(a):
        return a.reshape(len(a), 2, 16, 2, 16, 1).transpose(0, 1, 3, 2, 4, 5).reshape(len(a), 4, 16, 16, 1)

    inputs = keras.Input((4, 16, 16, 1))
    h = keras.layers.TimeDistributed(keras.layers.Conv2D(8, 3, strides=2, activation="relu"))(inputs)
    h = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling2D())(h)
    h = keras.layers.TimeDistributed(keras.layers.Dense(16, activation="relu"))(h)
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.Flatten()(h))
    model = _fit(keras.Model(inputs, out), frames(x), y, "sparse_categorical_crossentropy")
    path = folder / "time_distributed.keras"
    model.save(path)
    xe, _ = fashion32("test", 100)
    calib, evaluation = _save_data(folder, frames(x[:64]), frames(xe))
    return Made(path, calib, evaluation)


def two_outputs(folder: Path) -> Made:
    """Classes (softmax) and the image's mean ink (one regressed value)."""
    keras = _keras()
    x, y, calib, evaluation = _images(folder)
    inputs = keras.Input((32, 32, 1))
    h = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(32, 3, strides=2, activation="relu")(h))
    classes = keras.layers.Dense(10, activation="softmax", name="classes")(h)
    ink = keras.layers.Dense(1, name="ink")(h)
    model = keras.Model(inputs, [classes, ink])
    model.compile("adam", ["sparse_categorical_crossentropy", "mse"])
    model.fit(x, [y, x.mean(axis=(1, 2, 3))], epochs=2, batch_size=64, verbose=0)
    path = folder / "two_outputs.keras"
    model.save(path)
    return Made(path, calib, evaluation)


def regression(folder: Path, suffix: str = ".keras") -> Made:
    """One float out: the image's mean ink."""
    lib = _keras() if suffix == ".keras" else _tf_keras()
    x, _, calib, evaluation = _images(folder)
    inputs = lib.Input((32, 32, 1))
    h = lib.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    h = lib.layers.GlobalAveragePooling2D()(lib.layers.Conv2D(16, 3, strides=2, activation="relu")(h))
    model = _fit(lib.Model(inputs, lib.layers.Dense(1)(h)), x, x.mean(axis=(1, 2, 3)), "mse", epochs=3)
    path = folder / f"regression{suffix}"
    model.save(path)
    return Made(path, calib, evaluation)


def regression_h5(folder: Path) -> Made:
    return regression(folder, ".h5")


def tf_module(folder: Path) -> Made:
    """A plain tf.Module (no Keras) with a serving signature: a 2-layer MLP on flattened 32x32 images, fitted
    by a few steps of gradient descent."""
    import tensorflow as tf

    tf.random.set_seed(0)
    x, y = fashion32("train", TRAIN)

    class Mlp(tf.Module):
        def __init__(self):
            super().__init__()
            self.w1 = tf.Variable(tf.random.normal([1024, 32], stddev=0.05))
            self.b1 = tf.Variable(tf.zeros([32]))
            self.w2 = tf.Variable(tf.random.normal([32, 10], stddev=0.1))
            self.b2 = tf.Variable(tf.zeros([10]))

        def logits(self, images):
            h = tf.nn.relu(tf.matmul(tf.reshape(images, [-1, 1024]), self.w1) + self.b1)
            return tf.matmul(h, self.w2) + self.b2

        @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 1], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.nn.softmax(self.logits(images))}

    module = Mlp()
    optimizer = tf.optimizers.Adam(0.01)
    for step in range(60):
        batch = slice(step * 16 % TRAIN, step * 16 % TRAIN + 16)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                y[batch], module.logits(x[batch])))
        optimizer.apply_gradients(zip(tape.gradient(loss, module.trainable_variables), module.trainable_variables))
    path = folder / "tf_module"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    xe, _ = fashion32("test", 100)
    calib, evaluation = _save_data(folder, x[:64], xe)
    return Made(path, calib, evaluation)


def lambda_layer(folder: Path) -> Made:
    def body(lib, h):
        h = lib.layers.Conv2D(16, 3, strides=2, activation="relu")(h)
        return lib.layers.Lambda(lambda t: t * 2.0 - 1.0)(h)
    return _classifier(folder, "lambda_layer", _keras(), body)


def application(name: str, size: int = 32, pixels: float = 1.0):
    """keras.applications `name` (weights=None, 10 classes) at size x size x 3, fitted for 8 steps. Batch
    normalisation's moving statistics are taken from the last batch (momentum 0): at the default momentum,
    8 steps leave them at their initial values, and the model's outputs would not depend on its input.
    `pixels`: 255 for the models that rescale 0..255 pixels themselves (EfficientNet, ConvNeXt)."""
    def build(folder: Path) -> Made:
        keras = _keras()
        x, y, _, _ = _images(folder, 3)
        xe, _ = fashion32("test", 100, 3)
        if size != 32:
            x, xe = (np.asarray(keras.ops.image.resize(a, (size, size))) for a in (x, xe))
        x, xe = x * pixels, xe * pixels
        calib, evaluation = _save_data(folder, x[:64], xe)
        model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3), classes=10)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = 0.0
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:256], y[:256], epochs=1, batch_size=32, verbose=0)
        path = folder / f"{name}.keras"
        model.save(path)
        return Made(path, calib, evaluation)
    return build


BUILDERS = {
    "embed_gap": embed_gap,
    "embed_gap_h5": embed_gap_h5,
    "embed_lstm": embed_lstm,
    "embed_gru_h5": embed_gru_h5,
    "embed_int64": embed_int64,
    "transformer": transformer,
    "unet": unet,
    "near_tied": near_tied,
    "well_separated": well_separated,
    "separable": separable,
    "separable_h5": separable_h5,
    "groupnorm": groupnorm,
    "preprocessing": preprocessing,
    "uint8_image": uint8_image,
    "time_distributed": time_distributed,
    "two_outputs": two_outputs,
    "regression": regression,
    "regression_h5": regression_h5,
    "tf_module": tf_module,
    "lambda_layer": lambda_layer,
    "efficientnetb0": application("EfficientNetB0", pixels=255.0),
    "resnet50v2": application("ResNet50V2"),
    "densenet121": application("DenseNet121"),
    "nasnetmobile": application("NASNetMobile"),
    "convnexttiny": application("ConvNeXtTiny", pixels=255.0),
}
