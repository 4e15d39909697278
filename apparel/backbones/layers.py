"""Keras layers the built-in set lacks, registered so that saved models load in safe mode.

    >>> import keras, numpy as np
    >>> from apparel.backbones.layers import Logarithm
    >>> Logarithm()(np.array([[1.0, 0.0]], "float32"))      # log(0) floored, never -inf
"""

from __future__ import annotations

import keras

# The smallest probability whose logarithm is taken: float32's tiny would give -87, enough to be
# "impossible" after a softmax while staying finite for every runtime (LiteRT, ONNX, JAX).
FLOOR = 1e-30


@keras.saving.register_keras_serializable(package="apparel")
class Logarithm(keras.layers.Layer):
    """log(x), with x floored at ``FLOOR``: turns a model's probabilities into logits whose
    softmax gives them back, so a model that mixes probabilities answers like every other."""

    def call(self, inputs):
        return keras.ops.log(keras.ops.maximum(inputs, FLOOR))


@keras.saving.register_keras_serializable(package="apparel")
class AtMost(keras.layers.Layer):
    """1 where the largest value of a row (the last axis) is at most ``limit``, else 0: one
    column, the store model's "the garment head is unsure" (``apparel.store.model``)."""

    def __init__(self, limit: float, **kwargs):
        super().__init__(**kwargs)
        self.limit = float(limit)

    def call(self, inputs):
        return keras.ops.cast(keras.ops.less_equal(keras.ops.max(inputs, axis=-1, keepdims=True), self.limit),
                              inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "limit": self.limit}


@keras.saving.register_keras_serializable(package="apparel")
class RandomResolution(keras.layers.Layer):
    """In training only, some batches of photos at a lower resolution: with probability ``rate``, a
    batch is shrunk to a random share of its side between ``smallest`` and 1 (antialiased) and
    enlarged back (bilinear), as a store's small thumbnails (60×80 pixels) reach the model. At
    inference the photos pass unchanged. Training runs on TensorFlow, whose resize takes a size
    known only when the batch runs."""

    def __init__(self, smallest: float = 0.25, rate: float = 0.5, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.smallest, self.rate, self.seed = smallest, rate, seed
        self.generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        import tensorflow as tf

        side = [int(length) for length in images.shape[1:3]]
        scale = keras.random.uniform((), self.smallest, 1.0, seed=self.generator)
        chosen = keras.random.uniform((), seed=self.generator) < self.rate

        def lower():
            smaller = tf.cast(tf.round(tf.constant(side, tf.float32) * scale), tf.int32)
            shrunk = tf.image.resize(images, tf.maximum(smaller, 1), antialias=True)
            return tf.cast(tf.image.resize(shrunk, side, method="bilinear"), images.dtype)

        # A branch, not a selection of both: the batches left as they are cost no resizing.
        return tf.cond(chosen, lower, lambda: tf.identity(images))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "smallest": self.smallest, "rate": self.rate, "seed": self.seed}
