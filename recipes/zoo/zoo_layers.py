"""The custom layer of the zoo's fashion_attention model (recipes/zoo/fashion_attention.yaml): user code that
a saved model names but does not contain, so loading it needs `model.custom_objects` and the trust opt-in."""

from __future__ import annotations

import tensorflow as tf
import tf_keras


class AttentionPooling(tf_keras.layers.Layer):
    """Softmax attention over the time steps: one learned score per step, then the score-weighted sum of the steps."""

    def build(self, input_shape):
        self.score = self.add_weight(name="score", shape=(int(input_shape[-1]), 1), initializer="glorot_uniform")
        super().build(input_shape)

    def call(self, x):
        weights = tf.nn.softmax(tf.matmul(x, self.score), axis=1)  # (batch, steps, 1)
        return tf.reduce_sum(weights * x, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
