"""A tf_keras (Keras 2) model with a custom attention layer, trained here on Fashion-MNIST rows and saved as .h5.

`AttentionPooling` scores each of the 28 rows, softmaxes the scores over the rows and returns the weighted
sum of the rows' features: a layer Keras cannot rebuild from the .h5 file without this class.
Recipes name it as `tests.custom_layer_models:AttentionPooling`.
"""

from __future__ import annotations

from pathlib import Path

import tf_keras

from tests.recurrent_models import fashion_sequences


class AttentionPooling(tf_keras.layers.Layer):
    def __init__(self, units: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(int(input_shape[-1]), self.units), initializer="glorot_uniform")
        self.v = self.add_weight(name="v", shape=(self.units, 1), initializer="glorot_uniform")

    def call(self, x):
        import tensorflow as tf

        scores = tf.matmul(tf.tanh(tf.matmul(x, self.w)), self.v)  # (batch, steps, 1)
        weights = tf.nn.softmax(scores, axis=1)
        return tf.reduce_sum(weights * x, axis=1)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def attention_model(path: Path, *, train: int = 1000) -> Path:
    tf_keras.utils.set_random_seed(0)
    inputs = tf_keras.Input((28, 28), name="rows")
    h = tf_keras.layers.Dense(16, activation="relu")(inputs)
    h = AttentionPooling(8, name="attention")(h)
    outputs = tf_keras.layers.Dense(10, activation="softmax")(h)
    model = tf_keras.Model(inputs, outputs)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = fashion_sequences("train", train)
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    model.save(path)
    return path
