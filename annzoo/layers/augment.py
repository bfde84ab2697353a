"""Augmentation layers that are exactly the identity outside training.

Keras' image preprocessing layers augment whenever ``training`` is not
``False``: their ``call`` defaults to ``training=True``, so ``model(x)`` on a
model that contains them augments. ``keras.layers.RandomCrop`` after
``ZeroPadding2D`` is no substitute for the CIFAR pad-and-crop either: it crops
the whole batch at one location, and outside training it returns the padded
image unchanged (a shape the rest of the model does not expect). The two layers
here fix both, with ``keras.ops`` and ``keras.random`` only.
"""

from __future__ import annotations

import keras
from keras import ops

from annzoo.layers.walk import walk_layers


@keras.saving.register_keras_serializable(package="annzoo")
class RandomPadCrop(keras.layers.Layer):
    """Zero-pads each image and crops it back to its size at a random offset.

    This is the CIFAR augmentation of He et al. (2016, section 4.2): pad 4
    pixels on every side, take a random crop of the original size. It is
    computed as the equivalent per-image shift by ``(dy, dx)``, each drawn
    uniformly from ``{-padding, ..., padding}``, with zeros shifted in, so each
    image of a batch gets its own offset and no padded copy is materialised.
    Outside training (``training`` false or not given) the layer returns its
    input unchanged.

    Input contract: channels-last images, ``(batch, height, width, channels)``
    or a single ``(height, width, channels)`` image, any dtype.

    Args:
        padding: non-negative integer, the largest shift in pixels.
        seed: integer seed of the layer's ``keras.random.SeedGenerator``, or
            ``None`` for a random one.

    Example:
        >>> layer = RandomPadCrop(4, seed=0)
        >>> images = keras.ops.ones((2, 32, 32, 3))
        >>> layer(images, training=True).shape  # (2, 32, 32, 3), shifted
        >>> layer(images) is images  # identity at inference
    """

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(padding, bool) or int(padding) != padding or padding < 0:
            raise ValueError(
                "`padding` must be a non-negative integer. "
                f"Received: padding={padding!r}"
            )
        self.padding = int(padding)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None):
        if not training or self.padding == 0:
            return inputs
        images = ops.convert_to_tensor(inputs)
        if len(images.shape) == 3:
            return ops.squeeze(self._shift(ops.expand_dims(images, 0)), axis=0)
        return self._shift(images)

    def shift_then_flip(self, images, flip: keras.layers.RandomFlip):
        """``flip(self(images, training=True), training=True)`` in one gather.

        The same random draws from both layers' generators, so the same
        output; for a horizontal ``RandomFlip`` (channels last) after this
        layer on a batch, the CIFAR augmentation. The flip's select and
        reversed copy cost as much as the shift itself.
        """
        images = ops.convert_to_tensor(images)
        if self.padding == 0 or len(images.shape) != 4:  # nothing to fuse
            return flip(self(images, training=True), training=True)
        shifted = self._shift(images, flip=flip)
        return ops.cast(shifted, flip.compute_dtype)

    def _shift(self, images, flip=None):
        batch = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        p = self.padding
        dy = keras.random.randint((batch,), -p, p + 1, seed=self.generator)
        dx = keras.random.randint((batch,), -p, p + 1, seed=self.generator)
        # Output pixel (i, j) of image b is input pixel (i - dy_b, j - dx_b),
        # or (i - dy_b, width - 1 - j - dx_b) when it is then flipped.
        columns = ops.arange(width, dtype="int32")[None, :]
        if flip is not None:
            flips = flip.get_random_transformation(images, training=True)["flips"]
            flips = ops.reshape(flips, (-1, 1))
            columns = ops.where(flips, width - 1 - columns, columns)
        rows = ops.arange(height, dtype="int32")[None, :] - dy[:, None]
        cols = columns - dx[:, None]
        inside = ops.logical_and(
            ops.logical_and(rows >= 0, rows < height)[:, :, None],
            ops.logical_and(cols >= 0, cols < width)[:, None, :],
        )
        # One gather of whole pixels from the batch seen as a list of them,
        # with a zero pixel appended for those shifted in: two
        # `take_along_axis` calls broadcast their indices to the full image
        # shape and need a select after them (`benchmarks/run.py --only
        # pipeline` measures the augmentation).
        rows = ops.arange(batch, dtype="int32")[:, None] * height + rows
        pixel = rows[:, :, None] * width + cols[:, None, :]
        pixels = ops.reshape(images, (-1, channels))
        pixel = ops.where(inside, pixel, ops.shape(pixels)[0])  # the zero pixel
        pixels = ops.concatenate([pixels, ops.zeros((1, channels), images.dtype)])
        shifted = ops.take(pixels, ops.reshape(pixel, (-1,)), axis=0)
        return ops.reshape(shifted, ops.shape(images))

    def get_config(self):
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


# Keras' geometric layers whose random transformation is an affine map, read
# from the dict their `get_random_transformation` returns (see `_affine`).
_AFFINE_LAYERS = (
    keras.layers.RandomRotation,
    keras.layers.RandomTranslation,
    keras.layers.RandomZoom,
)


def _resampling(layer) -> tuple:
    """What one resampling of ``layer``'s output depends on besides its map."""
    return (
        layer.fill_mode,
        float(layer.fill_value),
        layer.interpolation,
        layer.data_format,
        layer.compute_dtype,
    )


def is_tf_tensor(x) -> bool:
    """Whether ``x`` is a TensorFlow tensor (``tf.data`` hands those out)."""
    return type(x).__module__.startswith("tensorflow")


def _matrices(b, entries):
    """Nine ``(batch,)`` entries, row by row, as ``(batch, 3, 3)`` matrices."""
    return b.numpy.reshape(b.numpy.stack(entries, axis=1), (-1, 3, 3))


def _affine(layer, transformation, height, width):
    """``(batch, 3, 3)`` float32 matrices taking an output pixel's ``(x, y, 1)``
    to the input point ``layer`` samples it from, for its ``transformation``;
    ``None`` for a transformation this function does not know."""
    b = layer.backend
    if isinstance(layer, keras.layers.RandomRotation):
        if "rotation_matrix" not in transformation:
            return None
        eight = b.cast(transformation["rotation_matrix"], "float32")
        ones = b.numpy.ones_like(eight[:, :1])
        return b.numpy.reshape(b.numpy.concatenate([eight, ones], axis=1), (-1, 3, 3))
    if isinstance(layer, keras.layers.RandomTranslation):
        if "translations" not in transformation:
            return None
        # Shifting by (dx, dy) pixels samples output (x, y) at (x - dx, y - dy).
        shift = b.cast(transformation["translations"], "float32")
        dx, dy = shift[:, 0], shift[:, 1]
        one, zero = b.numpy.ones_like(dx), b.numpy.zeros_like(dx)
        return _matrices(b, [one, zero, -dx, zero, one, -dy, zero, zero, one])
    if isinstance(layer, keras.layers.RandomZoom):
        if "width_zoom" not in transformation or "height_zoom" not in transformation:
            return None
        # Zooming by (zx, zy) about the image centre (cx, cy) samples output
        # (x, y) at (cx + zx (x - cx), cy + zy (y - cy)).
        zx = b.cast(b.numpy.reshape(transformation["width_zoom"], (-1,)), "float32")
        zy = b.cast(b.numpy.reshape(transformation["height_zoom"], (-1,)), "float32")
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        one, zero = b.numpy.ones_like(zx), b.numpy.zeros_like(zx)
        rows = [zx, zero, cx * (one - zx), zero, zy, cy * (one - zy), zero, zero, one]
        return _matrices(b, rows)
    return None


def affine_chain(layers, images):
    """Keras' geometric layers ``layers`` (rotation, translation, zoom), applied
    in order in training mode, as one resampling of ``images``.

    Each layer draws its random transformation from its own generator as its
    own call would, and the maps are composed: the output pixel ``p`` of the
    last layer is sampled at ``M_1 M_2 ... M_n p`` in the input, so each pixel
    is interpolated once, not blurred by every layer in turn. The resampling
    is Keras' ``affine_transform`` on TensorFlow (a native kernel) and
    `_bilinear_fill` elsewhere, for the bilinear, constant-fill, channels-last
    case (annzoo's); other settings use ``affine_transform`` too.

    One resampling instead of one per layer pays off on JAX and on larger
    images; on TensorFlow, for images as small as the digits, building the
    matrices costs about what the second interpolation saves
    (`benchmarks/run.py --only pipeline`; the figures are in
    benchmarks/RESULTS.md).

    The layers must share their fill mode and value, interpolation and data
    format (`fused_calls` checks). Inputs that are not a batch of rank 4, and
    TensorFlow tensors under another backend (``tf.data``, where Keras
    switches the layers' backend per call), go through the layers one after
    another; so do the draws, each layer's own transform in turn, should a
    transformation not have the form read here.
    """
    first = layers[0]
    graph = is_tf_tensor(images) and keras.backend.backend() != "tensorflow"
    if graph or len(images.shape) != 4:
        for layer in layers:
            images = layer(images, training=True)
        return images
    b = first.backend
    images = b.cast(b.convert_to_tensor(images), first.compute_dtype)
    channels_last = first.data_format == "channels_last"
    height, width = images.shape[1:3] if channels_last else images.shape[2:4]
    drawn = [layer.get_random_transformation(images, training=True) for layer in layers]
    matrices = [
        _affine(layer, t, height, width) for layer, t in zip(layers, drawn, strict=True)
    ]
    if any(m is None for m in matrices):
        for layer, transformation in zip(layers, drawn, strict=True):
            images = layer.transform_images(images, transformation, training=True)
        return images
    composed = matrices[0]
    for matrix in matrices[1:]:
        composed = b.numpy.matmul(composed, matrix)
    if (
        keras.backend.backend() != "tensorflow"  # which has a native kernel
        and first.interpolation == "bilinear"
        and first.fill_mode == "constant"
        and channels_last
    ):
        return _bilinear_fill(b, images, composed, first.fill_value)
    # Keras' eight numbers (a0, a1, a2, b0, b1, b2, c0, c1) are the first eight
    # entries of the 3 x 3 matrix, whose last entry is 1.
    transform = b.numpy.reshape(composed, (-1, 9))[:, :8]
    return b.image.affine_transform(
        images,
        transform,
        interpolation=first.interpolation,
        fill_mode=first.fill_mode,
        fill_value=first.fill_value,
        data_format=first.data_format,
    )


def _bilinear_fill(b, images, matrices, fill_value):
    """Channels-last ``images`` sampled bilinearly at ``matrices @ (x, y, 1)``
    for each output pixel ``(x, y)``, neighbours outside the image taken as
    ``fill_value``: Keras' ``affine_transform`` with ``fill_mode="constant"``
    for affine maps (equal within 1.2e-7 on JAX), as one gather of the four
    neighbours' pixels from the batch seen as a list of them, where Keras'
    ``affine_transform`` samples each channel of each image with its own
    ``map_coordinates`` (`benchmarks/run.py --only pipeline`).
    """
    shape = b.core.shape(images)
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    m = b.cast(matrices, "float32")[:, :, :, None, None]  # (batch, 3, 3, 1, 1)
    ys = b.numpy.arange(height, dtype="float32")[:, None]
    xs = b.numpy.arange(width, dtype="float32")[None, :]
    px = m[:, 0, 0] * xs + m[:, 0, 1] * ys + m[:, 0, 2]  # (batch, height, width)
    py = m[:, 1, 0] * xs + m[:, 1, 1] * ys + m[:, 1, 2]
    x0, y0 = b.numpy.floor(px), b.numpy.floor(py)
    fx, fy = px - x0, py - y0
    x0, y0 = b.cast(x0, "int32"), b.cast(y0, "int32")
    pixels = b.numpy.reshape(images, (-1, channels))
    outside = b.core.shape(pixels)[0]  # the index of the fill pixel appended
    fill = b.numpy.full((1, channels), fill_value, dtype=images.dtype)
    pixels = b.numpy.concatenate([pixels, fill], axis=0)
    starts = b.numpy.arange(shape[0], dtype="int32")[:, None, None] * (height * width)
    out = None
    for dy, wy in ((0, 1.0 - fy), (1, fy)):
        for dx, wx in ((0, 1.0 - fx), (1, fx)):
            row, col = y0 + dy, x0 + dx
            inside = b.numpy.logical_and(
                b.numpy.logical_and(row >= 0, row < height),
                b.numpy.logical_and(col >= 0, col < width),
            )
            index = b.numpy.where(inside, starts + row * width + col, outside)
            taken = b.numpy.take(pixels, b.numpy.reshape(index, (-1,)), axis=0)
            weight = b.cast(b.numpy.reshape(wy * wx, (-1, 1)), images.dtype)
            out = weight * taken if out is None else out + weight * taken
    return b.numpy.reshape(out, shape)


def fused_calls(layers) -> list:
    """``layers`` as calls in training mode, with two runs fused:

    * a `RandomPadCrop` followed by a horizontal ``RandomFlip`` (channels
      last), as `RandomPadCrop.shift_then_flip`: the same draws and output,
      without the flip's own pass over the batch;
    * consecutive rotations, translations and zooms that resample alike, as
      one resampling (`affine_chain`): the same draws, each pixel
      interpolated once; off TensorFlow a single one too.
    """
    calls = []
    index = 0
    while index < len(layers):
        layer = layers[index]
        after = layers[index + 1] if index + 1 < len(layers) else None
        run = index + 1
        if type(layer) in _AFFINE_LAYERS:
            while (
                run < len(layers)
                and type(layers[run]) in _AFFINE_LAYERS
                and _resampling(layers[run]) == _resampling(layer)
            ):
                run += 1
        # One layer alone too where `_bilinear_fill` stands in for Keras'
        # own resampling, one `map_coordinates` per channel and image.
        alone = run - index == 1 and keras.backend.backend() != "tensorflow"
        if type(layer) in _AFFINE_LAYERS and (run - index > 1 or alone):
            chain = tuple(layers[index:run])
            calls.append(lambda x, chain=chain: affine_chain(chain, x))
            index = run
        elif (
            isinstance(layer, RandomPadCrop)
            and type(after) is keras.layers.RandomFlip
            and after.mode == "horizontal"
            and after.data_format == "channels_last"
        ):
            calls.append(lambda x, a=layer, b=after: a.shift_then_flip(x, b))
            index += 2
        else:
            calls.append(lambda x, a=layer: a(x, training=True))
            index += 1
    return calls


@keras.saving.register_keras_serializable(package="annzoo")
class Augmentation(keras.layers.Pipeline):
    """Applies augmentation layers in training and nothing otherwise.

    A ``keras.layers.Pipeline`` with Dropout's convention: the layers run (with
    ``training=True``) only when the call is in training mode, as in ``fit``
    or ``model(x, training=True)``; ``predict``, ``evaluate`` and ``model(x)``
    pass the input through untouched. Every layer must keep the input's shape.
    On the JAX backend it lets XLA compile Keras' geometric layers, which Keras
    otherwise marks as not jit-compilable for TensorFlow's sake.

    Args:
        layers: the augmentation layers, applied in order, for example from
            ``annzoo.augment.layers(spec)``.
        name: layer name.

    Example:
        >>> aug = Augmentation([keras.layers.RandomFlip("horizontal", seed=1)])
        >>> images = keras.ops.ones((2, 8, 8, 3))
        >>> aug(images) is images  # identity outside training
        >>> aug(images, training=True).shape  # (2, 8, 8, 3), some flipped
    """

    def __init__(self, layers, name=None):
        super().__init__(layers, name=name)
        if keras.backend.backend() == "jax":
            # Keras marks its geometric layers (rotation, translation, zoom,
            # shear, so RandAugment too) `supports_jit=False` because
            # TensorFlow's XLA has no kernel for ImageProjectiveTransformV3,
            # and one such layer makes `compile(jit_compile="auto")` turn XLA
            # off for the whole model. Their JAX versions trace fine, and a JAX
            # train step without XLA runs op by op, many times slower.
            for layer in self.layers:
                for sublayer in walk_layers(layer):
                    sublayer.supports_jit = True

    def build(self, input_shape):
        for layer in self.layers:
            if not layer.built:
                layer.build(input_shape)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs, training=None, mask=None):
        if not training:
            return inputs
        if mask is not None:  # Pipeline carries masks from layer to layer
            return super().call(inputs, training=True, mask=mask)
        x = inputs
        for call in fused_calls(self.layers):  # as Pipeline, CIFAR's pair fused
            x = call(x)
        return x
