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


def input_adapters(expected: tuple, received: tuple) -> list[keras.layers.Layer]:
    """Layers that turn ``received`` images into the ``expected`` format.

    Both shapes are ``(height, width, channels)``; ``None`` in ``expected``
    accepts anything. A new size is resized (``input_adapter_resize``,
    bilinear, before any channel change: resizing commutes with both and is
    cheaper on fewer channels). One channel into several is repeated
    (``input_adapter_rgb``, no weights); any other channel change goes
    through a trainable 1x1 convolution (``input_adapter_conv``), which starts
    random and must be trained.

    Example:
        >>> [a.name for a in input_adapters((224, 224, 3), (28, 28, 1))]
        ['input_adapter_resize', 'input_adapter_rgb']
    """
    height, width, channels = expected
    layers = []
    if None not in (height, width) and tuple(received[:2]) != (height, width):
        layers.append(keras.layers.Resizing(height, width, name="input_adapter_resize"))
    if channels is not None and received[2] != channels:
        if received[2] == 1:
            layers.append(GrayscaleToRGB(channels, name="input_adapter_rgb"))
        else:
            layers.append(keras.layers.Conv2D(channels, 1, name="input_adapter_conv"))
    return layers
