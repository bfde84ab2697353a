"""Generative adversarial networks: a DCGAN-style generator and discriminator.

:func:`build_gan` returns a :class:`~annzoo.layers.gan.GAN`, one Keras model
holding both networks whose ``fit`` plays the game (its ``train_step`` updates
the discriminator, then the generator); :func:`sample` draws images from it,
seeded and repeatable. The model class, its training steps and the losses
(:mod:`annzoo.layers.gan.losses`) live in `annzoo.layers.gan`, with annzoo's
other serializable classes.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from annzoo import tasks
from annzoo._checks import (
    check_choice,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
    check_rate,
    is_int,
)
from annzoo.errors import AnnzooError
from annzoo.layers.gan import GAN, OptimizerPair, check_labels, losses
from annzoo.layers.gan.losses import LOSSES
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = ["GAN", "OptimizerPair", "build_gan", "losses", "sample"]

# Every up- and down-sampling is a 4x4 convolution of stride 2 (Radford et al.
# 2016: no pooling, strided convolutions in both networks).
KERNEL = 4
COMPILE_KEYS = (
    "optimizer",
    "generator_optimizer",
    "discriminator_optimizer",
    "jit_compile",
    "steps_per_execution",
)


def _dataset_arguments(train: Any) -> dict[str, Any]:
    # A dataset with classes gives a GAN conditional on them (a recipe may set
    # conditional_classes=None to ignore them).
    classes = int(train.num_classes) if train.num_classes else None
    return {
        "image_shape": [int(d) for d in train.input_shape],
        "conditional_classes": classes,
    }


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    return {
        "input_shape": (int(config["latent_dim"]),),
        "output_shape": tuple(config["image_shape"]),
    }


SPEC = FamilySpec(
    tasks=("adversarial",),
    data=("sample",),
    dataset_arguments=_dataset_arguments,
    search_space={
        "latent_dim": [32, 64, 128],
        "dropout": [0.0, 0.2, 0.3],
        "loss": ["bce", "hinge"],
    },
    smoke=dict(
        image_shape=(8, 8, 1),
        latent_dim=4,
        generator_filters=(8, 4),
        discriminator_filters=(4,),
        # Eight classes: the registry-driven tests draw int inputs from 1 to 7.
        conditional_classes=8,
    ),  # fmt: skip
    predict=("arrays",),
    report=("samples",),
    shapes=_shapes,
)


@register("gan", spec=SPEC)
def build_gan(
    image_shape: tuple[int, int, int],
    *,
    latent_dim: int = 64,
    generator_filters: int | tuple[int, ...] = (128, 64),
    discriminator_filters: int | tuple[int, ...] = (64, 128),
    dropout: float = 0.3,
    loss: str = "bce",
    gradient_penalty: float = 10.0,
    conditional_classes: int | None = None,
    task: str = "adversarial",
    compile: bool | dict = True,
    name: str = "gan",
) -> GAN:
    """Builds a DCGAN-style generative adversarial network (Radford et al. 2016).

    Generator: noise of shape ``(latent_dim,)`` (and, when conditional, the
    label one-hot, concatenated to it) -> ``Dense`` to a
    ``(H / 2^k, W / 2^k, generator_filters[0])`` map (``k =
    len(generator_filters)``) -> batch norm, ReLU -> for each further width a
    4x4 ``Conv2DTranspose`` of stride 2, batch norm, ReLU -> a last 4x4
    ``Conv2DTranspose`` of stride 2 to the image's channels -> sigmoid: images
    in [0, 1], channels last, as annzoo's datasets scale them. Discriminator:
    for each width a 4x4 ``Conv2D`` of stride 2, LeakyReLU(0.2), dropout ->
    flatten -> one raw score; when conditional, plus the projection of the
    features on an embedding of the label (Miyato and Koyama 2018). No batch
    norm in the discriminator, which the gradient penalty needs.

    Training: ``model.fit(images)``, or ``model.fit(images, labels)`` for a
    conditional GAN (labels: int class ids); logs ``d_loss``, ``g_loss`` and
    ``loss`` (their sum). ``model.generator`` and ``model.discriminator`` are
    the two networks as Keras models; calling the GAN runs the generator.

    Args:
        image_shape: ``(height, width, channels)``; height and width divisible
            by ``2 ** len(generator_filters)``.
        latent_dim: size of the noise vector.
        generator_filters: the generator's widths, from the smallest map up;
            its length is the number of upsamplings.
        discriminator_filters: the discriminator's convolution widths.
        dropout: rate in [0, 1) after each discriminator block.
        loss: ``"bce"`` (non-saturating), ``"hinge"`` or ``"wgan-gp"``.
        gradient_penalty: weight of the gradient penalty (``"wgan-gp"``).
        conditional_classes: number of classes to condition both networks on;
            None for an unconditional GAN.
        task: ``"adversarial"``.
        compile: ``True`` compiles with Adam(2e-4, beta_1=0.5) for both
            networks, ``False`` leaves it uncompiled, a dict is passed to
            ``GAN.compile`` (``generator_optimizer``,
            ``discriminator_optimizer``, or ``optimizer`` for both;
            ``jit_compile``, ``steps_per_execution``).
        name: the model's name.

    Returns:
        A compiled :class:`~annzoo.layers.gan.GAN`.

    Example:
        >>> gan = annzoo.build_gan((8, 8, 1), latent_dim=32, conditional_classes=10)
        >>> gan.fit(digit_images, digit_labels, epochs=20)
    """
    tasks.check_task(task, ("adversarial",))
    image_shape = check_input_shape("image_shape", image_shape, rank=3)
    if None in image_shape:
        raise AnnzooError(
            "`image_shape` must be (height, width, channels) with known sizes. "
            f"Received: image_shape={image_shape}"
        )
    latent_dim = check_positive_int("latent_dim", latent_dim)
    generator_filters = check_int_sequence(
        "generator_filters", generator_filters, allow_empty=False
    )
    discriminator_filters = check_int_sequence(
        "discriminator_filters", discriminator_filters, allow_empty=False
    )
    dropout = check_rate("dropout", dropout)
    loss = check_choice("loss", loss, LOSSES)
    gradient_penalty = check_positive_float("gradient_penalty", gradient_penalty)
    if conditional_classes is not None:
        conditional_classes = check_positive_int(
            "conditional_classes", conditional_classes
        )
    compile = _check_compile(compile)
    name = check_name("name", name)
    scale = 2 ** len(generator_filters)
    if image_shape[0] % scale or image_shape[1] % scale:
        raise AnnzooError(
            f"`image_shape` must have a height and width divisible by {scale} "
            f"(the generator starts from a map 1/{scale} of the image's size and "
            "doubles it once per entry of `generator_filters`). Received: "
            f"image_shape={image_shape}, generator_filters={generator_filters}"
        )

    generator = _generator(image_shape, latent_dim, generator_filters,
                           conditional_classes, name=f"{name}_generator")  # fmt: skip
    discriminator = _discriminator(image_shape, discriminator_filters, dropout,
                                   conditional_classes,
                                   name=f"{name}_discriminator")  # fmt: skip
    model = GAN(
        generator, discriminator, loss=loss, gradient_penalty=gradient_penalty,
        name=name,
    )  # fmt: skip
    if compile is not False and compile is not None:
        model.compile(**({} if compile is True else compile))
    return model


def _check_compile(compile: Any) -> Any:
    if compile is True or compile is False or compile is None:
        return compile
    if isinstance(compile, dict) and set(compile) <= set(COMPILE_KEYS):
        return compile
    raise AnnzooError(
        "`compile` must be True, False or a dict with some of "
        f"{list(COMPILE_KEYS)} (a GAN's losses are the builder's `loss`). "
        f"Received: compile={compile!r}"
    )


def _generator(image_shape, latent_dim, filters, classes, *, name):
    height, width, channels = image_shape
    scale = 2 ** len(filters)
    noise = keras.Input((latent_dim,), name="noise")
    inputs: Any = noise
    x = noise
    if classes:
        labels = keras.Input((), dtype="int32", name="labels")
        one_hot = keras.layers.CategoryEncoding(
            classes, output_mode="one_hot", name="label_one_hot"
        )(labels)
        x = keras.layers.Concatenate(name="noise_and_label")([noise, one_hot])
        inputs = [noise, labels]
    x = keras.layers.Dense(
        height // scale * (width // scale) * filters[0], use_bias=False,
        name="project",
    )(x)  # fmt: skip
    x = keras.layers.Reshape(
        (height // scale, width // scale, filters[0]), name="project_reshape"
    )(x)
    x = keras.layers.BatchNormalization(name="project_bn")(x)
    x = keras.layers.Activation("relu", name="project_relu")(x)
    for i, width_i in enumerate(filters[1:], start=1):
        x = keras.layers.Conv2DTranspose(
            width_i, KERNEL, strides=2, padding="same", use_bias=False,
            name=f"block{i}_deconv",
        )(x)  # fmt: skip
        x = keras.layers.BatchNormalization(name=f"block{i}_bn")(x)
        x = keras.layers.Activation("relu", name=f"block{i}_relu")(x)
    x = keras.layers.Conv2DTranspose(
        channels, KERNEL, strides=2, padding="same", name="output_deconv"
    )(x)
    images = keras.layers.Activation("sigmoid", dtype="float32", name="images")(x)
    return keras.Model(inputs, images, name=name)


def _discriminator(image_shape, filters, dropout, classes, *, name):
    images = keras.Input(image_shape, name="images")
    inputs: Any = images
    x = images
    for i, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            width, KERNEL, strides=2, padding="same", name=f"block{i}_conv"
        )(x)
        x = keras.layers.LeakyReLU(0.2, name=f"block{i}_leaky_relu")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"block{i}_dropout")(x)
    features = keras.layers.Flatten(name="flatten")(x)
    score = keras.layers.Dense(1, name="score")(features)
    if classes:
        labels = keras.Input((), dtype="int32", name="labels")
        embedded = keras.layers.Embedding(
            classes, features.shape[-1], name="label_embedding"
        )(labels)
        projection = keras.layers.Dot(axes=1, name="projection")([features, embedded])
        score = keras.layers.Add(name="projected_score")([score, projection])
        inputs = [images, labels]
    return keras.Model(inputs, score, name=name)


def sample(
    model: GAN, num: int, *, labels: Any = None, seed: int = 0, batch_size: int = 256
) -> np.ndarray:
    """Images drawn from ``model``'s generator, the same for the same ``seed``.

    The noise is drawn with NumPy (``np.random.default_rng(seed)``, standard
    normal), so a seed gives the same noise on every backend.

    Args:
        model: a GAN (`build_gan`).
        num: how many images.
        labels: class ids ``(num,)`` for a conditional GAN, or one id for all;
            None gives ``num`` images cycling through the classes (0, 1, ...,
            K-1, 0, ...). Must be None for an unconditional GAN.
        seed: the noise's seed.
        batch_size: images generated per call.

    Returns:
        float32 images ``(num, height, width, channels)`` in [0, 1].

    Example:
        >>> threes = sample(gan, 16, labels=3, seed=1)
    """
    if not isinstance(model, GAN):
        raise AnnzooError(
            "`model` must be a GAN built by annzoo.build_gan. Received: "
            f"model of type {type(model).__name__}"
        )
    num = check_positive_int("num", num)
    seed = check_non_negative_int("seed", seed)
    batch_size = check_positive_int("batch_size", batch_size)
    classes = model.generator.get_layer("label_one_hot").num_tokens if (
        model.conditional
    ) else None  # fmt: skip
    if classes is not None and labels is None:
        labels = np.arange(num) % classes
    elif classes is not None and is_int(labels):
        labels = np.full(num, labels)
    labels = check_labels(labels, classes, num=num, name="labels")
    noise = np.random.default_rng(seed).standard_normal((num, model.latent_dim))
    noise = noise.astype("float32")
    out = []
    for start in range(0, num, batch_size):
        part = noise[start : start + batch_size]
        inputs: Any = part
        if labels is not None:
            inputs = {"noise": part, "labels": labels[start : start + batch_size]}
        images = model.generator(inputs, training=False)
        out.append(keras.ops.convert_to_numpy(images))
    return np.concatenate(out).astype("float32")


def parameter_count(image_shape, latent_dim, generator_filters,
                    discriminator_filters, conditional_classes) -> int:  # fmt: skip
    """Every weight of `build_gan`'s two networks, from the layer formulas
    (batch-norm moving statistics included); the tests check presets against
    their own copy of this arithmetic."""
    height, width, channels = image_shape
    k = len(generator_filters)
    classes = conditional_classes or 0
    cells = height // 2**k * (width // 2**k)
    count = (latent_dim + classes) * cells * generator_filters[0]
    count += 4 * generator_filters[0]
    for previous, current in zip(
        generator_filters[:-1], generator_filters[1:], strict=True
    ):
        count += KERNEL * KERNEL * previous * current + 4 * current
    count += KERNEL * KERNEL * generator_filters[-1] * channels + channels
    fan_in = channels
    for current in discriminator_filters:
        count += KERNEL * KERNEL * fan_in * current + current
        fan_in = current
    m = len(discriminator_filters)
    features = math.ceil(height / 2**m) * math.ceil(width / 2**m) * fan_in
    count += features + 1 + classes * features
    return count


# Parameter formulas (Keras layers): Dense(n) on m inputs without bias m*n;
# BatchNormalization(c) 4c (gamma, beta, moving mean and variance);
# Conv2DTranspose / Conv2D 4x4 from a to b channels 16*a*b (+ b with bias);
# Embedding(K, F) K*F.
PRESETS: dict[str, dict[str, Any]] = {
    "dcgan_digits": dict(
        description=(
            "Conditional DCGAN for the 8x8 digits (10 classes): noise(32) + "
            "one-hot label -> Dense to 2x2x64 -> deconv 4x4x32 -> deconv "
            "8x8x1 sigmoid; discriminator conv 4x4x32 -> conv 2x2x64 -> score "
            "+ label projection. Non-saturating loss, Adam(2e-4, beta_1=0.5)."
        ),
        reference=Reference(
            params=80_610,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: generator Dense "
                "(32+10)*(2*2*64) = 10,752, BN 4*64 = 256, deconv 16*64*32 = "
                "32,768, BN 4*32 = 128, deconv 16*32*1 + 1 = 513 (44,417); "
                "discriminator conv 16*1*32 + 32 = 544, conv 16*32*64 + 64 = "
                "32,832, Dense 256 + 1 = 257, Embedding 10*256 = 2,560 (36,193); "
                "total 80,610"
            ),
        ),
        image_shape=(8, 8, 1),
        latent_dim=32,
        generator_filters=(64, 32),
        discriminator_filters=(32, 64),
        dropout=0.3,
        conditional_classes=10,
    ),
    "dcgan_shapes": dict(
        description=(
            "DCGAN for the 32x32 colour shapes images: noise(64) -> Dense to "
            "4x4x128 -> deconv 8x8x64 -> deconv 16x16x32 -> deconv 32x32x3 "
            "sigmoid; discriminator conv 16x16x32 -> 8x8x64 -> 4x4x128 -> "
            "score. Non-saturating loss, Adam(2e-4, beta_1=0.5)."
        ),
        reference=Reference(
            params=464_996,
            kind="total",
            source=(
                "hand formula from the Keras layer definitions: generator Dense "
                "64*(4*4*128) = 131,072, BN 512, deconv 16*128*64 = 131,072, BN "
                "256, deconv 16*64*32 = 32,768, BN 128, deconv 16*32*3 + 3 = "
                "1,539 (297,347); discriminator conv 16*3*32 + 32 = 1,568, conv "
                "16*32*64 + 64 = 32,832, conv 16*64*128 + 128 = 131,200, Dense "
                "2048 + 1 = 2,049 (167,649); total 464,996"
            ),
        ),
        image_shape=(32, 32, 3),
        latent_dim=64,
        generator_filters=(128, 64, 32),
        discriminator_filters=(32, 64, 128),
        dropout=0.3,
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "gan", **_preset)
