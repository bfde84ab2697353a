"""Input adapters that let a model trained on one image format take another."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="annzoo")
class GrayscaleToRGB(keras.layers.Layer):
    """Repeats a single image channel ``channels`` times (grayscale -> RGB).

    A network pretrained on RGB images sees a gray pixel as three equal
    channels; repeating the gray channel feeds it exactly that, without new
    weights. :func:`annzoo.finetune` puts this layer in front of a model when
    ``input_shape`` has one channel and the model expects several.

    Args:
        channels: number of output channels (3 for RGB).

    Example:
        >>> GrayscaleToRGB()(keras.ops.ones((2, 8, 8, 1))).shape
        (2, 8, 8, 3)
    """

    def __init__(self, channels: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)

    def build(self, input_shape):
        if input_shape[-1] != 1:
            raise ValueError(
                "GrayscaleToRGB expects images with 1 channel (channels last). "
                f"Received: input_shape={tuple(input_shape)}"
            )

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.channels)

    def call(self, inputs):
        return ops.repeat(inputs, self.channels, axis=-1)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}
