"""Image augmentation presets for recipes, built from Keras preprocessing layers.

A *spec* says which augmentations to apply, as data a recipe can store::

    "cifar"                                     # a preset name
    ["flip", {"name": "pad_crop", "padding": 4}]  # or a list of ops

and :func:`resolve` turns it into the normalised, JSON-serialisable list with
every parameter filled in. The same spec can then run in one of two places:

* on the accelerator, inside the model: :func:`in_model` returns
  ``augmentation layers -> model``, augmenting only in training;
* in the input pipeline (CPU): :func:`pipeline_fn` for the per-sample ops and
  :func:`batch_mix_fn` for mixup/cutmix, on ``tf.data`` or numpy batches.

Image contract: float images in [0, 1], channels last, ``(batch, height,
width, channels)``. Model code here is ``keras``/``keras.ops`` only; nothing
imports TensorFlow.
"""

from __future__ import annotations

import copy
import difflib
import io
import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import ops

from annzoo._checks import (
    check_choice,
    check_non_negative_int,
    check_positive_float,
    check_positive_int,
)
from annzoo.errors import AnnzooError
from annzoo.layers.augment import (
    Augmentation,
    RandomPadCrop,
    fused_calls,
    is_tf_tensor,
)
from annzoo.io import write_bytes

__all__ = [
    "MIXING_OPS",
    "OPS",
    "PRESETS",
    "batch_mix_fn",
    "in_model",
    "layers",
    "pipeline_fn",
    "preview",
    "resolve",
]

Spec = str | Sequence[str | Mapping[str, Any]] | None

_FILL_MODES = ("constant", "reflect", "wrap", "nearest")
_FLIP_MODES = ("horizontal", "vertical", "horizontal_and_vertical")


# --- parameter checks: each returns the normalised value or raises ----------


def _check_unit(
    name: str, value: Any, *, low_open: bool = True, high_open: bool = False
) -> float:
    """A number in (0, 1], [0, 1] or (0, 1) as the flags say."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = (v > 0.0 if low_open else v >= 0.0) and (
            v < 1.0 if high_open else v <= 1.0
        )
    if not ok:
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise AnnzooError(
            f"`{name}` must be a number in {interval}. Received: {name}={value!r}"
        )
    return float(value)


def _fraction(name, value):  # rotation, translation, contrast: (0, 1]
    return _check_unit(name, value)


def _zoom(name, value):  # a zoom of 100% would shrink the image to nothing
    return _check_unit(name, value, high_open=True)


def _zoom_width(name, value):
    return None if value is None else _zoom(name, value)


def _strength(name, value):  # RandAugment's magnitude: [0, 1]
    return _check_unit(name, value, low_open=False)


def _value_range(name, value):
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
        and value[0] < value[1]
    ):
        return [value[0], value[1]]
    raise AnnzooError(
        f"`{name}` must be a pair (low, high) with low < high, the range of the "
        f"pixel values. Received: {name}={value!r}"
    )


def _choice(choices):
    return lambda name, value: check_choice(name, value, choices)


# --- the ops: parameters with their defaults and checks, then the layer ------

# op -> {parameter: (default, check)}; the order of the keys is the order a
# resolved spec lists them in.
_PARAMS: dict[str, dict[str, tuple[Any, Callable[[str, Any], Any]]]] = {
    "flip": {"mode": ("horizontal", _choice(_FLIP_MODES))},
    "pad_crop": {"padding": (4, check_non_negative_int)},
    "rotation": {
        "factor": (0.1, _fraction),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "translation": {
        "height": (0.1, _fraction),
        "width": (0.1, _fraction),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "zoom": {
        "height": (0.1, _zoom),
        "width": (None, _zoom_width),
        "fill_mode": ("constant", _choice(_FILL_MODES)),
    },
    "contrast": {"factor": (0.2, _fraction), "value_range": ((0, 1), _value_range)},
    "randaugment": {
        "num_ops": (2, check_positive_int),
        "factor": (0.5, _strength),
        "value_range": ((0, 1), _value_range),
    },
    "mixup": {"alpha": (0.2, check_positive_float)},
    "cutmix": {"alpha": (1.0, check_positive_float)},
}

#: The op names and their default parameters.
OPS: Mapping[str, Mapping[str, Any]] = {
    op: {k: d for k, (d, _) in params.items()} for op, params in _PARAMS.items()
}
#: The ops that mix pairs of images and their labels (input pipeline only).
MIXING_OPS = ("mixup", "cutmix")

#: Named specs. Rotation factors are fractions of a full turn (0.03 ~ 11 deg).
PRESETS: Mapping[str, tuple] = {
    "none": (),
    "flip": ("flip",),
    # He et al. (2016), section 4.2: 4-pixel pad-and-crop plus horizontal flip.
    "cifar": ({"name": "pad_crop", "padding": 4}, {"name": "flip"}),
    # Digits are not mirror-symmetric: small rotations and shifts, no flips.
    "digits": (
        {"name": "rotation", "factor": 0.03},
        {"name": "translation", "height": 0.1, "width": 0.1},
    ),
    # Cubuk et al. (2020): 2 random ops per batch at magnitude 0.5.
    "randaugment": ({"name": "randaugment", "num_ops": 2, "factor": 0.5},),
}


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


# --- specs -------------------------------------------------------------------


def _resolve_item(index: int, item: Any) -> dict[str, Any]:
    where = f"Augmentation {index} of the spec"
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, Mapping) or "name" not in item:
        raise AnnzooError(
            f"{where} must be an op name or a dict with a 'name' key, one of "
            f"{sorted(_PARAMS)}. Received: {item!r}"
        )
    try:
        op = check_choice("name", item["name"], _PARAMS)
    except AnnzooError as error:
        raise type(error)(f"{where}: {error}") from None
    params = _PARAMS[op]
    for key in item:
        if key != "name" and key not in params:
            close = difflib.get_close_matches(str(key), params, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise AnnzooError(
                f"{where}: {op!r} has no parameter {key!r}; its parameters are "
                f"{sorted(params)}. Received: {key}={item[key]!r}.{hint}"
            )
    resolved: dict[str, Any] = {"name": op}
    for key, (default, check) in params.items():
        try:
            resolved[key] = check(key, item.get(key, default))
        except AnnzooError as error:
            raise type(error)(f"{where} ({op!r}): {error}") from None
    return resolved


def resolve(spec: Spec) -> list[dict[str, Any]]:
    """Validates a spec and returns it normalised, every parameter filled in.

    Args:
        spec: a preset name (one of ``PRESETS``: ``"none"``, ``"flip"``,
            ``"cifar"``, ``"digits"``, ``"randaugment"``), ``None`` (no
            augmentation), or a list whose items are op names or dicts
            ``{"name": op, **params}``. The ops (defaults in ``OPS``):
            ``flip`` (``mode``: ``"horizontal"``, ``"vertical"`` or
            ``"horizontal_and_vertical"``), ``pad_crop`` (``padding`` pixels),
            ``rotation`` (``factor`` in (0, 1], a fraction of a full turn),
            ``translation`` (``height``, ``width``: fractions of the size),
            ``zoom`` (``height`` in (0, 1); ``width`` likewise or ``None`` to
            keep the aspect ratio), ``contrast`` (``factor`` in (0, 1]),
            ``randaugment`` (``num_ops``, ``factor`` in [0, 1]), ``mixup`` and
            ``cutmix`` (``alpha`` > 0 of the Beta distribution). Rotation,
            translation and zoom also take ``fill_mode`` (default
            ``"constant"``: zeros), contrast and randaugment ``value_range``
            (default ``(0, 1)``).

    Returns:
        A new list of dicts ``{"name": op, **params}`` made of JSON types;
        ``resolve(resolve(spec)) == resolve(spec)``.

    Raises:
        UnknownNameError: an unknown preset, op or mode name (the message
            suggests the closest one).
        AnnzooError: an unknown parameter, a value out of range, or mixup or
            cutmix twice.

    Example:
        >>> resolve("cifar")
        [{'name': 'pad_crop', 'padding': 4}, {'name': 'flip', 'mode': 'horizontal'}]
        >>> resolve([{"name": "mixup", "alpha": 0.4}])
        [{'name': 'mixup', 'alpha': 0.4}]
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        try:
            spec = PRESETS[check_choice("spec", spec, PRESETS)]
        except AnnzooError as error:
            raise type(error)(
                f"{error} A spec is a preset name or a list of ops from "
                f"{sorted(_PARAMS)}."
            ) from None
    if not isinstance(spec, Sequence):
        raise AnnzooError(
            "`spec` must be a preset name, None or a list of ops (names or dicts "
            f"with a 'name' key). Received: spec={spec!r}"
        )
    items = [_resolve_item(i, copy.deepcopy(item)) for i, item in enumerate(spec)]
    for op in MIXING_OPS:
        if sum(item["name"] == op for item in items) > 1:
            raise AnnzooError(
                f"`spec` may contain {op!r} at most once. Received: spec={spec!r}"
            )
    return items


def _describe(items: Sequence[Mapping[str, Any]]) -> str:
    if not items:
        return "none"
    parts = []
    for item in items:
        args = ", ".join(f"{k}={v!r}" for k, v in item.items() if k != "name")
        parts.append(f"{item['name']}({args})")
    return " + ".join(parts)


def _seeds(seed: int | None, count: int, *, stream: int = 0) -> list[int | None]:
    """Distinct, reproducible seeds derived from one seed (one stream per use)."""
    if seed is None:
        return [None] * count
    seed = check_non_negative_int("seed", seed)
    state = np.random.SeedSequence([seed, stream]).generate_state(count)
    return [int(s) % (2**31 - 1) for s in state]


# --- per-sample ops: in the model or in the pipeline -------------------------


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


def _mixing_items(items):
    return [item["name"] for item in items if item["name"] in MIXING_OPS]


def mixing_ops(spec: Spec) -> list[str]:
    """Names of the ops in ``spec`` that mix labels too (mixup, cutmix)."""
    return _mixing_items(resolve(spec))


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


def _is_numpy(x) -> bool:
    return isinstance(x, (np.ndarray, np.generic))


def _check_tensor_backend(images, what: str) -> None:
    # keras.ops under JAX/PyTorch cannot run on TensorFlow's symbolic tensors,
    # so annzoo's own ops (not Keras' data layers) need numpy batches there.
    if is_tf_tensor(images) and keras.backend.backend() != "tensorflow":
        raise AnnzooError(
            f"{what} runs on TensorFlow tensors (tf.data) only with the TensorFlow "
            f"backend; the backend is {keras.backend.backend()!r}. Apply it to numpy "
            "batches (e.g. `dataset.as_numpy_iterator()`) or use `in_model`. "
            f"Received: images of type {type(images).__name__}"
        )


def _one_program(fn: Callable, states: list) -> Callable:
    """``fn``, which draws from the seed-generator ``states``, compiled by XLA
    as one program on JAX (the state values in, their updates out and
    written back); ``fn`` itself on the other backends.

    On NumPy batches JAX would otherwise run the ops one by one, each its own
    dispatch: the ``digits`` rotation and translation in the input pipeline
    made a digits CNN's steps 8.3 times as long as on one repeated batch, on
    a 2-core CPU.
    """
    if keras.backend.backend() != "jax" or not states:
        return fn
    import jax

    def stateless(values, *args):
        mapping = list(zip(states, values, strict=True))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            out = fn(*args)
        return out, [scope.get_current_value(v) for v in states]

    compiled = jax.jit(stateless)

    def run(*args):
        if any(is_tf_tensor(a) for a in args):  # tf.data: Keras' layers switch backend
            return fn(*args)
        out, values = compiled([v.value for v in states], *args)
        for state, value in zip(states, values, strict=True):
            state.assign(value)
        return out

    return run


def pipeline_fn(
    spec: Spec, *, seed: int | None = None, keep_on_device: bool = False
) -> Callable[[Any, Any], tuple[Any, Any]]:
    """A batch function for the input pipeline: the per-sample ops, always on.

    The function maps ``(images, labels) -> (augmented_images, labels)`` and
    augments every call (``training=True``), a batch ``(batch, height, width,
    channels)`` or a single image ``(height, width, channels)``. It works in
    ``tf.data`` (with the TensorFlow backend; with other backends only Keras'
    own layers do, ``pad_crop`` raises) and on numpy arrays, for which it
    returns numpy. Mixup and cutmix are left out: chain :func:`batch_mix_fn`
    after it, on batches.

    Args:
        spec: a spec, see :func:`resolve`.
        seed: non-negative integer for a reproducible sequence of batches, or
            ``None``.
        keep_on_device: return the backend's tensors for NumPy input too,
            where the model takes them next: no copy back to the host, and on
            JAX no wait for the batch (the recipe runner's setting on JAX).

    Returns:
        A function ``(images, labels) -> (images, labels)``.

    Example:
        >>> augment = pipeline_fn("cifar", seed=0)
        >>> dataset = dataset.batch(128).map(augment)  # tf.data, on the CPU
        >>> images, labels = augment(x_batch, y_batch)  # numpy in, numpy out
    """
    items = resolve(spec)
    steps = layers(items, seed=seed)
    has_own_ops = any(item["name"] == "pad_crop" for item in items)

    def augment(images, labels):
        if not steps:
            return images, labels
        if has_own_ops:
            _check_tensor_backend(images, "The 'pad_crop' augmentation")
        as_numpy = _is_numpy(images) and not keep_on_device
        x = run(images)
        return (ops.convert_to_numpy(x) if as_numpy else x), labels

    plan = fused_calls(steps)

    def run(x):
        for step in plan:
            x = step(x)
        return x

    run = _one_program(run, [v for step in steps for v in step.variables])
    # The seed generators' state variables, which a training loop may reset
    # per epoch (annzoo.training.callbacks.EpochOrder) for exact resumes.
    augment.random_states = [
        v for step in steps for v in step.variables if v.name == "seed_generator_state"
    ]
    return augment


def _mix(images, labels, *, mixup_alpha, cutmix_alpha, generator):
    """Mixes each sample with a random partner; returns images, labels, weight.

    ``weight`` is each sample's own share: the label is ``weight * own +
    (1 - weight) * partner``. Mixup (Zhang et al. 2018) blends the pixels with
    that weight; cutmix (Yun et al. 2019) pastes a box of the partner, whose
    exact pixel count sets the weight. With both, each sample gets one of the
    two at random.
    """
    batch = ops.shape(images)[0]
    height, width = images.shape[1], images.shape[2]
    dtype = keras.backend.standardize_dtype(images.dtype)
    partner = keras.random.shuffle(ops.arange(batch, dtype="int32"), seed=generator)
    other_images = ops.take(images, partner, axis=0)
    other_labels = ops.take(labels, partner, axis=0)
    mixed = weight = None
    if mixup_alpha is not None:
        weight = keras.random.beta(
            (batch,), mixup_alpha, mixup_alpha, seed=generator, dtype=dtype
        )
        w = ops.reshape(weight, (-1, 1, 1, 1))
        mixed = w * images + (1.0 - w) * other_images
    if cutmix_alpha is not None:
        lam = keras.random.beta(
            (batch,), cutmix_alpha, cutmix_alpha, seed=generator, dtype="float32"
        )
        ratio = ops.sqrt(1.0 - lam)
        cut_h = ops.cast(ops.floor(height * ratio), "int32") // 2
        cut_w = ops.cast(ops.floor(width * ratio), "int32") // 2
        cy = keras.random.randint((batch,), 0, height, seed=generator)
        cx = keras.random.randint((batch,), 0, width, seed=generator)
        y0, y1 = ops.clip(cy - cut_h, 0, height), ops.clip(cy + cut_h, 0, height)
        x0, x1 = ops.clip(cx - cut_w, 0, width), ops.clip(cx + cut_w, 0, width)
        rows = ops.arange(height, dtype="int32")[None, :, None, None]
        cols = ops.arange(width, dtype="int32")[None, None, :, None]

        def edge(v):
            return ops.reshape(v, (-1, 1, 1, 1))

        box = ops.logical_and(
            ops.logical_and(rows >= edge(y0), rows < edge(y1)),
            ops.logical_and(cols >= edge(x0), cols < edge(x1)),
        )
        cut = ops.where(box, other_images, images)
        area = ops.cast((y1 - y0) * (x1 - x0), "float32")
        cut_weight = ops.cast(1.0 - area / float(height * width), dtype)
        if mixed is None:
            mixed, weight = cut, cut_weight
        else:
            use_cut = keras.random.uniform((batch,), seed=generator) < 0.5
            mixed = ops.where(ops.reshape(use_cut, (-1, 1, 1, 1)), cut, mixed)
            weight = ops.where(use_cut, cut_weight, weight)
    w = ops.cast(ops.reshape(weight, (-1, 1)), "float32")
    return mixed, w * labels + (1.0 - w) * other_labels, weight


def batch_mix_fn(
    spec: Spec,
    num_classes: int,
    *,
    seed: int | None = None,
    keep_on_device: bool = False,
) -> Callable[[Any, Any], tuple[Any, Any]] | None:
    """A batch function for mixup/cutmix, or ``None`` if the spec has neither.

    The function maps ``(images, labels) -> (images, mixed_labels)``: each
    sample is mixed with a random partner from the same batch, and its one-hot
    label becomes ``w * own + (1 - w) * partner`` with ``w`` its share of the
    mixed image (mixup: the blend weight, ``w ~ Beta(alpha, alpha)``; cutmix:
    the fraction of pixels not pasted over). With both ops in the spec each
    sample gets one of them at random. Labels may be integers ``(batch,)`` or
    ``(batch, 1)``, or already one-hot/soft ``(batch, num_classes)`` floats.
    Works in ``tf.data`` with the TensorFlow backend and on numpy batches
    (numpy in, numpy out) with any backend. Train with a loss that takes soft
    labels (``categorical_crossentropy``).

    Args:
        spec: a spec, see :func:`resolve`; its per-sample ops are ignored here.
        num_classes: number of classes, for the one-hot labels.
        seed: non-negative integer for a reproducible sequence, or ``None``.
        keep_on_device: as for :func:`pipeline_fn`.

    Returns:
        A function ``(images, labels) -> (images, soft_labels)``, or ``None``.

    Example:
        >>> mix = batch_mix_fn([{"name": "mixup", "alpha": 0.2}], 10, seed=0)
        >>> images, soft_labels = mix(x_batch, y_batch)  # soft_labels: (B, 10)
    """
    items = resolve(spec)
    alphas = {item["name"]: item["alpha"] for item in items if "alpha" in item}
    if not alphas:
        return None
    num_classes = check_positive_int("num_classes", num_classes)
    (mix_seed,) = _seeds(seed, 1, stream=1)
    generator = keras.random.SeedGenerator(mix_seed)

    def mix(images, labels):
        _check_tensor_backend(images, "Mixup/cutmix")
        as_numpy = _is_numpy(images) and not keep_on_device
        x = ops.convert_to_tensor(images)
        if "float" not in keras.backend.standardize_dtype(x.dtype):
            x = ops.cast(x, "float32")
        y = ops.convert_to_tensor(labels)
        if not (len(y.shape) == 2 and y.shape[-1] == num_classes and num_classes > 1):
            if len(y.shape) == 2:
                y = ops.squeeze(y, axis=-1)
            y = ops.one_hot(ops.cast(y, "int32"), num_classes)
        x, y = mixed(x, ops.cast(y, "float32"))
        if as_numpy:
            return ops.convert_to_numpy(x), ops.convert_to_numpy(y)
        return x, y

    def mixed(x, y):
        x, y, _ = _mix(
            x,
            y,
            mixup_alpha=alphas.get("mixup"),
            cutmix_alpha=alphas.get("cutmix"),
            generator=generator,
        )
        return x, y

    mixed = _one_program(mixed, [generator.state])
    mix.random_states = [generator.state]
    return mix


# --- preview -------------------------------------------------------------------


def _as_float_images(images) -> np.ndarray:
    batch = np.asarray(ops.convert_to_numpy(images))
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] not in (1, 3) or batch.shape[0] == 0:
        raise AnnzooError(
            "`images` must be a non-empty batch (batch, height, width, channels) "
            "with 1 or 3 channels. Received: images.shape="
            f"{getattr(batch, 'shape', None)}"
        )
    if batch.dtype == np.uint8:
        return batch.astype("float32") / 255.0
    batch = batch.astype("float32")
    low, high = float(batch.min()), float(batch.max())
    if low < -1e-6 or high > 1 + 1e-6 or math.isnan(low + high):
        raise AnnzooError(
            "`images` must be floats in [0, 1] (or uint8). Received: images with "
            f"values in [{low}, {high}]"
        )
    return batch


def preview(
    spec: Spec,
    images,
    path: str | os.PathLike,
    *,
    samples: int = 8,
    variants: int = 4,
    seed: int = 0,
    title: str | None = None,
) -> Path:
    """Draws a grid of augmented versions of some images, as a PNG.

    Row ``i`` shows image ``i``: the original first, then ``variants``
    augmented versions. Mixup and cutmix mix each image with another image of
    the same ``samples`` rows; those panels are labelled with the image's own
    share ``w`` of the label.

    Args:
        spec: a spec, see :func:`resolve`.
        images: a batch ``(n, height, width, channels)``, 1 (grayscale) or 3
            (RGB) channels, float in [0, 1] or uint8.
        path: where the PNG goes (written atomically).
        samples: how many images (rows) to show, at most ``n``.
        variants: augmented versions per image (columns after the original).
        seed: seed of the augmentation.
        title: figure title (default: the resolved spec).

    Returns:
        ``path`` as a ``Path``.

    Example:
        >>> preview("cifar", x_train[:8], "runs/cifar/augmentation.png")
    """
    items = resolve(spec)
    samples = check_positive_int("samples", samples)
    variants = check_non_negative_int("variants", variants)
    batch = _as_float_images(images)[:samples]
    count = batch.shape[0]
    ids = np.arange(count)
    augment = pipeline_fn(items, seed=seed)
    mix = batch_mix_fn(items, max(count, 2), seed=seed)
    columns, notes = [batch], [None]
    for _ in range(variants):
        out, _ = augment(batch, ids)
        note = None
        if mix is not None:
            out, soft = mix(np.asarray(out, "float32"), ids)
            note = [f"w={w:.2f}" for w in soft[ids, ids]]
        columns.append(np.asarray(out))
        notes.append(note)

    from annzoo.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(
        count,
        variants + 1,
        figsize=(1.4 * (variants + 1), 1.4 * count + 0.6),
        squeeze=False,
    )
    for col, (column, note) in enumerate(zip(columns, notes, strict=True)):
        for row in range(count):
            ax = axes[row][col]
            image = np.clip(column[row], 0.0, 1.0)
            if image.shape[-1] == 1:
                ax.imshow(image[..., 0], cmap="gray", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if note:
                ax.set_xlabel(note[row], fontsize=7)
            if row == 0:
                ax.set_title("original" if col == 0 else f"augmented {col}", fontsize=8)
    fig.suptitle(title or f"augmentation: {_describe(items)}", fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return write_bytes(path, buffer.getvalue())
