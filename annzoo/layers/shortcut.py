"""The parameter-free residual shortcut of He et al. (2016), "option A"."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="annzoo")
class PaddedIdentity(keras.layers.Layer):
    """Identity shortcut that subsamples space and zero-pads channels.

    The CIFAR ResNets of He et al. (2016, section 4.2) keep every shortcut free
    of parameters: where a stage halves the resolution and doubles the width,
    the shortcut takes every ``strides``-th pixel and pads the channel axis
    with zeros, half before the input's channels and half after.

    Args:
        filters: number of output channels (>= the input's).
        strides: spatial subsampling factor.

    Example:
        >>> y = PaddedIdentity(32, strides=2)(keras.ops.ones((1, 8, 8, 16)))
        >>> y.shape  # (1, 4, 4, 32): channels 0-7 and 24-31 are zero
    """

    def __init__(self, filters: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.strides = int(strides)

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape

        def sub(n):
            return None if n is None else -(-n // self.strides)

        return (batch, sub(height), sub(width), self.filters)

    def call(self, inputs):
        x = inputs[:, :: self.strides, :: self.strides, :]
        extra = self.filters - inputs.shape[-1]
        if extra < 0:
            raise ValueError(
                f"`filters` must be >= the input's {inputs.shape[-1]} channels. "
                f"Received: filters={self.filters}"
            )
        if extra:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])
        return x

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "strides": self.strides,
        }
