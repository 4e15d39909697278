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
