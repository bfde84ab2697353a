"""The per-sample ops as Keras layers: `layers`, and `in_model` in front of a model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

from annzoo.augment.specs import MIXING_OPS, Spec, _mixing_items, _seeds, resolve
from annzoo.errors import AnnzooError
from annzoo.layers.augment import Augmentation, RandomPadCrop


def _build_layer(item: Mapping[str, Any], seed: int | None) -> keras.layers.Layer:
    op = item["name"]
    if op == "flip":
        return keras.layers.RandomFlip(item["mode"], seed=seed)
    if op == "pad_crop":
        return RandomPadCrop(item["padding"], seed=seed)
    if op == "rotation":
        return keras.layers.RandomRotation(
            item["factor"], fill_mode=item["fill_mode"], fill_value=0.0, seed=seed
        )
    if op == "translation":
        return keras.layers.RandomTranslation(
            item["height"],
            item["width"],
            fill_mode=item["fill_mode"],
            fill_value=0.0,
            seed=seed,
        )
    if op == "zoom":
        return keras.layers.RandomZoom(
            item["height"],
            item["width"],
            fill_mode=item["fill_mode"],
            fill_value=0.0,
            seed=seed,
        )
    if op == "contrast":
        return keras.layers.RandomContrast(
            item["factor"], value_range=tuple(item["value_range"]), seed=seed
        )
    if op == "randaugment":
        return keras.layers.RandAugment(
            value_range=tuple(item["value_range"]),
            num_ops=item["num_ops"],
            factor=item["factor"],
            seed=seed,
        )
    raise AssertionError(f"no layer for {op!r}")  # resolve() let it through


def layers(spec: Spec, *, seed: int | None = None) -> list[keras.layers.Layer]:
    """Builds the per-sample augmentation layers of a spec.

    Mixup and cutmix are left out (see :func:`batch_mix_fn`). Each layer gets
    its own seed derived from ``seed``. Note that Keras' preprocessing layers
    augment whenever ``training`` is not ``False`` (their ``call`` defaults
    to ``training=True``); wrap them in ``annzoo.layers.Augmentation``, or use
    :func:`in_model`, to augment only in training.

    Args:
        spec: a spec, see :func:`resolve`.
        seed: non-negative integer for reproducible augmentation, or ``None``.

    Returns:
        A list of Keras layers, in the order of the spec.

    Example:
        >>> [type(layer).__name__ for layer in layers("cifar", seed=0)]
        ['RandomPadCrop', 'RandomFlip']
    """
    items = [i for i in resolve(spec) if i["name"] not in MIXING_OPS]
    return [
        _build_layer(item, s)
        for item, s in zip(items, _seeds(seed, len(items)), strict=True)
    ]


def in_model(
    model: keras.Model, spec: Spec, *, seed: int | None = None, name: str | None = None
) -> keras.Model:
    """Puts augmentation in front of a model, to run on the accelerator.

    The result is a new functional model ``images -> Augmentation -> model``.
    The augmentation runs only in training (``fit``, ``model(x,
    training=True)``); ``predict``, ``evaluate`` and ``model(x)`` give exactly
    the wrapped model's outputs. ``model`` is shared, not copied: training the
    wrapper trains ``model``, which can be used or saved on its own afterwards.
    If ``model`` was compiled, the wrapper is compiled from its compile config
    (same optimizer configuration, loss, metrics, jit setting) with a fresh
    optimizer state. The wrapper saves and reloads as ``.keras`` without
    ``custom_objects`` once ``annzoo`` is imported.

    With the TensorFlow backend, a wrapper with rotation, translation, zoom or
    randaugment trains without XLA (TensorFlow's XLA lacks their image
    transform op; Keras then turns ``jit_compile="auto"`` off). With JAX the
    ``Augmentation`` layer lets XLA compile them; randaugment's XLA compile is
    slow (it traces all its 11 transforms for each of its ``num_ops``).

    Args:
        model: a Keras model with one image input ``(height, width,
            channels)``, float in [0, 1].
        spec: a spec, see :func:`resolve`; mixup and cutmix are rejected.
        seed: non-negative integer for reproducible augmentation, or ``None``.
        name: name of the new model (default: ``"<model.name>_augmented"``).

    Returns:
        The new ``keras.Model``.

    Example:
        >>> base = annzoo.create_model("resnet20")
        >>> train_model = in_model(base, "cifar", seed=0)
        >>> train_model.fit(images, labels)  # base is trained in place
    """
    if not isinstance(model, keras.Model):
        raise AnnzooError(f"`model` must be a keras.Model. Received: model={model!r}")
    items = resolve(spec)
    mixing = _mixing_items(items)
    if mixing:
        raise AnnzooError(
            f"`spec` contains {mixing}: mixup and cutmix change the labels too, so "
            "they cannot run inside a model. Apply them in the input pipeline with "
            f"`batch_mix_fn(spec, num_classes)`. Received: spec={spec!r}"
        )
    if len(model.inputs) != 1 or len(model.inputs[0].shape) != 4:
        shapes = [tuple(t.shape) for t in model.inputs]
        raise AnnzooError(
            "`model` must have one image input of shape (batch, height, width, "
            f"channels). Received: input shapes {shapes}"
        )
    source = model.inputs[0]
    inputs = keras.Input(
        shape=tuple(source.shape[1:]), dtype=source.dtype, name=source.name
    )
    augmented = Augmentation(layers(items, seed=seed), name="augmentation")(inputs)
    wrapper = keras.Model(
        inputs, model(augmented), name=name or f"{model.name}_augmented"
    )
    if getattr(model, "compiled", False):
        config = model.get_compile_config()
        if config:
            wrapper.compile_from_config(config)
    return wrapper
