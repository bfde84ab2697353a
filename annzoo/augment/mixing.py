"""Mixup and cutmix: `batch_mix_fn`, which mixes images and their labels.

They change the labels too, so they run in the input pipeline only, on
batches, after `pipeline_fn`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from annzoo._checks import check_positive_int
from annzoo.augment.pipeline import _check_tensor_backend, _is_numpy, _one_program
from annzoo.augment.specs import Spec, _seeds, resolve


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
