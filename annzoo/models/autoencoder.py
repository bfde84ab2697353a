"""Autoencoders and variational autoencoders (VAEs), optionally conditional.

One builder, :func:`build_autoencoder`, covers a dense or convolutional
autoencoder, its variational form (Kingma and Welling 2014; ``beta`` of
Higgins et al. 2017) and the conditional VAE (Sohn et al. 2015), whose encoder
and decoder both see the class label. The model is an
:class:`annzoo.layers.Autoencoder`: a functional model made of two functional
sub-models, ``encoder`` and ``decoder`` (``model.get_layer("decoder")``),
which trains with plain ``model.fit(x, x)`` and reports ``reconstruction``
and ``kl`` beside ``loss``.

The helpers work on any such model, built or reloaded: :func:`encode`,
:func:`decode`, :func:`sample` (seeded), :func:`interpolate` and
:func:`elbo_terms` (the test ELBO by Monte Carlo, in nats per image).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np

from annzoo import tasks
from annzoo._checks import (
    check_bool,
    check_choice,
    check_input_shape,
    check_int_sequence,
    check_name,
    check_parameter_terms,
    check_positive_int,
    is_int,
)
from annzoo.errors import AnnzooError
from annzoo.layers.latent import Autoencoder, GaussianLatent
from annzoo.models._autoencoder_helpers import (  # users import them from here
    decode,
    elbo_terms,
    encode,
    interpolate,
    sample,
)
from annzoo.models._common import check_compile, finish, shape_arguments
from annzoo.registry import FamilySpec, Reference, register, register_preset

__all__ = [
    "build_autoencoder",
    "decode",
    "elbo_terms",
    "encode",
    "interpolate",
    "sample",
]

ENCODERS = ("dense", "conv")
TASKS = ("bernoulli", "reconstruction")


def _shapes(config: dict[str, Any]) -> dict[str, tuple]:
    """The images in, the same shape out (a conditional model also takes labels)."""
    shape = config["input_shape"]
    shape = (shape,) if is_int(shape) else tuple(shape)
    return {"input_shape": shape, "output_shape": shape}


def _inputs_as_targets(split: Any) -> Any:
    """A dataset split as an autoencoder trains on it: ``fit(x, x)``."""
    # Its own class labels play no part (a conditional model's recipe would
    # need both inputs); the split becomes a regression onto the inputs.
    return dataclasses.replace(
        split, y=split.x, task="regression", num_classes=None, class_names=None
    )


SPEC = FamilySpec(
    tasks=TASKS,
    data=("sample",),
    # The data sets the image shape; the labels only matter to a conditional
    # model, whose class count a recipe gives as `conditional_classes`.
    dataset_arguments=shape_arguments,
    search_space={
        "hidden_units": {"type": "layers", "depth": [1, 2], "values": [64, 128, 256]},
        "latent_dim": [2, 4, 8, 16],
    },
    smoke=dict(
        input_shape=(4, 4, 1), latent_dim=2, hidden_units=(8,), variational=True
    ),  # fmt: skip
    predict=("arrays",),
    report=("samples", "reconstructions"),
    shapes=_shapes,
    training_split=_inputs_as_targets,
)


@register("autoencoder", spec=SPEC)
def build_autoencoder(
    input_shape: int | tuple[int, ...],
    *,
    latent_dim: int = 8,
    encoder: str = "dense",
    hidden_units: int | tuple[int, ...] = (128, 64),
    filters: int | tuple[int, ...] = (32, 64),
    variational: bool = False,
    beta: float = 1.0,
    conditional_classes: int | None = None,
    task: str = "bernoulli",
    compile: bool | dict = True,
    name: str = "autoencoder",
) -> Autoencoder:
    """Builds an autoencoder, a VAE or a conditional VAE.

    Input contract: float32 images (or feature vectors) of shape
    ``input_shape`` with values in [0, 1], as annzoo's datasets scale them
    (channels last for ``encoder="conv"``); with ``conditional_classes``, also
    int32 class ids of shape ``(batch,)`` in ``[0, conditional_classes)``.
    The output is the reconstruction: a probability per value, same shape.

    * ``encoder="dense"``: flatten, Dense layers of ``hidden_units`` (relu),
      the code; the decoder mirrors it (``hidden_units`` reversed) up to one
      sigmoid per value.
    * ``encoder="conv"``: 3x3 convolutions of stride 2 with ``filters``
      (relu), flatten, the code; the decoder projects the code back and
      mirrors the convolutions with stride-2 transposed convolutions, so
      height and width must be divisible by ``2 ** len(filters)``.
    * ``variational=True``: the encoder outputs ``z_mean`` and ``z_log_var``,
      the layer ``latent`` (:class:`annzoo.layers.GaussianLatent`) draws
      ``z`` when training (the mean otherwise) and adds the KL term. With
      ``task="bernoulli"`` the loss is ``reconstruction + beta * kl``, in nats
      per image: the negative ELBO for ``beta=1``. ``model.evaluate`` decodes
      the mean code, so its loss is not a sampled ELBO: :func:`elbo_terms`
      estimates that one.
    * ``conditional_classes=K``: the one-hot label is concatenated to the
      encoder's flattened input (after the convolutions for ``"conv"``) and to
      the code before decoding.

    Train it on its inputs: ``model.fit(x, x)``, or ``model.fit((x, labels),
    x)`` when conditional.

    Args:
        input_shape: shape of one image, e.g. ``(8, 8, 1)``, or of a feature
            vector (dense only).
        latent_dim: size of the code ``z`` (tunable: the default search
            space tries 2 to 16).
        encoder: ``"dense"`` or ``"conv"``.
        hidden_units: Dense widths of the dense encoder (reversed in the
            decoder); its length is the depth. Unused by ``"conv"``.
        filters: convolution widths of the conv encoder (reversed in the
            decoder). Unused by ``"dense"``.
        variational: a VAE (a Gaussian code with a KL term) instead of a
            deterministic code.
        beta: weight of the KL term, >= 0 (variational only).
        conditional_classes: number of classes to condition on (>= 2), or
            None.
        task: ``"bernoulli"`` (the Bernoulli negative log-likelihood summed
            over values, nats per image; needed for a VAE) or
            ``"reconstruction"`` (mean squared error).
        compile: ``True`` compiles with the task's defaults, ``False`` returns
            the model uncompiled, a dict is passed to ``annzoo.compile_model``.
        name: the model's name.

    Returns:
        An :class:`annzoo.layers.Autoencoder` mapping ``images`` (and
        ``labels``) to the reconstruction, with sub-models ``encoder`` and
        ``decoder``.

    Example:
        >>> model = annzoo.build_autoencoder((8, 8, 1), latent_dim=8, variational=True)
        >>> model.fit(x, x, epochs=30)
    """
    task = tasks.check_task(task, TASKS)
    latent_dim = check_positive_int("latent_dim", latent_dim)
    encoder = check_choice("encoder", encoder, ENCODERS)
    hidden_units = check_int_sequence("hidden_units", hidden_units)
    filters = check_int_sequence("filters", filters, allow_empty=False)
    variational = check_bool("variational", variational)
    beta = _check_beta(beta)
    if conditional_classes is not None and (
        not is_int(conditional_classes) or conditional_classes < 2
    ):
        raise AnnzooError(
            "`conditional_classes` must be None or an integer >= 2 (the number of "
            f"classes). Received: conditional_classes={conditional_classes!r}"
        )
    if variational and task != "bernoulli":
        raise AnnzooError(
            "`task` must be 'bernoulli' for a variational autoencoder: its loss "
            "adds a KL term in nats to a log-likelihood in nats. "
            f"Received: task={task!r}, variational=True"
        )
    input_shape = _check_input_shape(input_shape, encoder, filters)
    compile = check_compile(compile, task)
    name = check_name("name", name)
    _check_size(input_shape, latent_dim, encoder, hidden_units, filters)

    classes = None if conditional_classes is None else int(conditional_classes)
    if encoder == "dense":
        encoder_model = _dense_encoder(
            input_shape, hidden_units, latent_dim, variational, classes
        )
        decoder_model = _dense_decoder(input_shape, hidden_units, latent_dim, classes)
    else:
        encoder_model, grid = _conv_encoder(
            input_shape, filters, latent_dim, variational, classes
        )
        decoder_model = _conv_decoder(input_shape, filters, grid, latent_dim, classes)

    images = keras.Input(input_shape, name="images")
    inputs = [images]
    if classes is not None:
        inputs.append(keras.Input((), dtype="int32", name="labels"))
    code = encoder_model(inputs if classes else images)
    if variational:
        code = GaussianLatent(name="latent")(code)
    outputs = decoder_model([code, inputs[1]] if classes else code)
    model = Autoencoder(inputs if classes else images, outputs, beta=beta, name=name)
    return finish(model, task, compile)


def _check_beta(beta: Any) -> float:
    if (
        isinstance(beta, bool)
        or not isinstance(beta, int | float | np.floating | np.integer)
        or not math.isfinite(float(beta))
        or beta < 0
    ):
        raise AnnzooError(
            "`beta` must be a finite number >= 0 (the weight of the KL term). "
            f"Received: beta={beta!r}"
        )
    return float(beta)


def _check_input_shape(input_shape: Any, encoder: str, filters: tuple) -> tuple:
    shape = check_input_shape("input_shape", input_shape)
    if None in shape:
        raise AnnzooError(
            "`input_shape` must be fully known (the decoder rebuilds every value). "
            f"Received: input_shape={shape}"
        )
    if encoder == "conv":
        if len(shape) != 3:
            raise AnnzooError(
                "`input_shape` must be (height, width, channels) for "
                f"encoder='conv'. Received: input_shape={shape}"
            )
        factor = 2 ** len(filters)
        if shape[0] % factor or shape[1] % factor:
            raise AnnzooError(
                f"`input_shape` must have a height and width divisible by "
                f"2 ** len(filters) = {factor} for encoder='conv' (each "
                "convolution halves them and the decoder doubles them back). "
                f"Received: input_shape={shape}, filters={filters}"
            )
    return shape


def _check_size(shape, latent_dim, encoder, hidden_units, filters) -> None:
    """Refuses a model whose weights cannot fit in memory, before building it."""
    values = math.prod(shape)
    if encoder == "dense":
        widths = [values, *hidden_units, latent_dim]
        terms = [
            (2 * (a + 1) * b, [("hidden_units", hidden_units, max(a, b))])
            for a, b in zip(widths, widths[1:], strict=False)
        ]
    else:
        grid = values // shape[2] // 4 ** len(filters)
        terms = [
            (2 * 9 * (a + 1) * b, [("filters", filters, b)])
            for a, b in zip((shape[2], *filters), filters, strict=False)
        ]
        last = filters[-1]
        block = 3 * grid * last * (latent_dim + 1)
        terms.append(
            (block, [("filters", filters, last), ("input_shape", shape, grid)])
        )
    block = 3 * values * (latent_dim + 1)
    factors = [("latent_dim", latent_dim, latent_dim), ("input_shape", shape, values)]
    terms.append((block, factors))
    check_parameter_terms(terms)


def _label_inputs(classes: int | None, prefix: str):
    """The int32 ``labels`` input of a sub-model and its one-hot rows."""
    if classes is None:
        return None, None
    labels = keras.Input((), dtype="int32", name="labels")
    one_hot = keras.layers.CategoryEncoding(
        classes, output_mode="one_hot", name=f"{prefix}_one_hot"
    )(labels)
    return labels, one_hot


def _code_heads(x, latent_dim: int, variational: bool):
    if variational:
        return [
            keras.layers.Dense(latent_dim, name="z_mean")(x),
            keras.layers.Dense(latent_dim, name="z_log_var")(x),
        ]
    return keras.layers.Dense(latent_dim, name="z")(x)


def _dense_encoder(shape, hidden_units, latent_dim, variational, classes):
    images = keras.Input(shape, name="images")
    labels, one_hot = _label_inputs(classes, "encoder")
    x = keras.layers.Flatten(name="flatten")(images) if len(shape) > 1 else images
    if one_hot is not None:
        x = keras.layers.Concatenate(name="with_label")([x, one_hot])
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
    outputs = _code_heads(x, latent_dim, variational)
    inputs = [images, labels] if classes else images
    return keras.Model(inputs, outputs, name="encoder")


def _dense_decoder(shape, hidden_units, latent_dim, classes):
    code = keras.Input((latent_dim,), name="code")
    labels, one_hot = _label_inputs(classes, "decoder")
    x = code
    if one_hot is not None:
        x = keras.layers.Concatenate(name="with_label")([x, one_hot])
    for i, units in enumerate(reversed(hidden_units), start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"hidden{i}")(x)
    x = keras.layers.Dense(math.prod(shape), name="logits")(x)
    x = keras.layers.Activation("sigmoid", dtype="float32", name="probabilities")(x)
    if len(shape) > 1:
        x = keras.layers.Reshape(shape, name="reconstruction")(x)
    return keras.Model([code, labels] if classes else code, x, name="decoder")


def _conv_encoder(shape, filters, latent_dim, variational, classes):
    images = keras.Input(shape, name="images")
    labels, one_hot = _label_inputs(classes, "encoder")
    x = images
    for i, width in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            width, 3, strides=2, padding="same", activation="relu", name=f"conv{i}"
        )(x)
    grid = tuple(x.shape[1:3])
    x = keras.layers.Flatten(name="flatten")(x)
    if one_hot is not None:
        x = keras.layers.Concatenate(name="with_label")([x, one_hot])
    outputs = _code_heads(x, latent_dim, variational)
    inputs = [images, labels] if classes else images
    return keras.Model(inputs, outputs, name="encoder"), grid


def _conv_decoder(shape, filters, grid, latent_dim, classes):
    code = keras.Input((latent_dim,), name="code")
    labels, one_hot = _label_inputs(classes, "decoder")
    x = code
    if one_hot is not None:
        x = keras.layers.Concatenate(name="with_label")([x, one_hot])
    units = grid[0] * grid[1] * filters[-1]
    x = keras.layers.Dense(units, activation="relu", name="project")(x)
    x = keras.layers.Reshape((*grid, filters[-1]), name="grid")(x)
    for i, width in enumerate(reversed(filters), start=1):
        x = keras.layers.Conv2DTranspose(
            width, 3, strides=2, padding="same", activation="relu", name=f"deconv{i}"
        )(x)
    x = keras.layers.Conv2D(shape[2], 3, padding="same", name="logits")(x)
    x = keras.layers.Activation("sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model([code, labels] if classes else code, x, name="decoder")


# -- helpers: encode, decode, sample, interpolate, the ELBO ---------------------


_DIGITS = dict(input_shape=(8, 8, 1), latent_dim=8, hidden_units=(128, 64))


PRESETS: dict[str, dict[str, Any]] = {
    "autoencoder_digits": dict(
        description=(
            "Dense autoencoder of the 8x8 digits: 64-128-64-8 encoder, mirrored "
            "decoder, Bernoulli reconstruction loss."
        ),
        reference=Reference(
            params=34_248,
            kind="total",
            source=(
                "hand formula: (fan_in + 1) * units summed over the Dense layers "
                "64-128-64-8 and 8-64-128-64: 17,096 + 17,152"
            ),
        ),
        **_DIGITS,
    ),
    "vae_digits": dict(
        description=(
            "Variational autoencoder of the 8x8 digits (Kingma and Welling "
            "2014): dense 64-128-64 encoder to an 8-d Gaussian code, mirrored "
            "decoder, loss the negative ELBO in nats per image."
        ),
        reference=Reference(
            params=34_768,
            kind="total",
            source=(
                "hand formula: autoencoder_digits plus a second code head "
                "(mean and log-variance): 34,248 + 65 * 8"
            ),
        ),
        variational=True,
        **_DIGITS,
    ),
    "cvae_digits": dict(
        description=(
            "Conditional VAE of the 8x8 digits (Sohn et al. 2015): vae_digits "
            "with the one-hot digit concatenated to the encoder's input and to "
            "the code."
        ),
        reference=Reference(
            params=36_688,
            kind="total",
            source=(
                "hand formula: vae_digits plus 10 one-hot inputs to the first "
                "encoder and decoder Dense layers: 34,768 + 10 * 128 + 10 * 64"
            ),
        ),
        variational=True,
        conditional_classes=10,
        **_DIGITS,
    ),
}

for _name, _preset in PRESETS.items():
    register_preset(_name, "autoencoder", **_preset)
